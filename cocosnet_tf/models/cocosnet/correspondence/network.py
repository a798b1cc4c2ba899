"""CorrespondenceNet: domain alignment, the dense coarsest level, PatchMatch levels.

call(label, exemplar, exemplar_label) returns a dict:
    warps            list, coarse to fine, [B, h_l, w_l, 3] exemplar warped to each level
    cycle_warp       [B, h_0, w_0, 3] the coarsest warp warped back (warp-cycle loss)
    positions        list per PatchMatch level, [B, h, w, K, 2] candidate positions (x, y)
                     in exemplar pixels of that level (the data's flow convention)
    weights          list per PatchMatch level, [B, h, w, K] softmax weights
    dense_best       [B, h_0, w_0, 2] best match (x, y) of the dense coarsest level
and in training (what the flow supervision reads):
    dense_log_attention  [B, h_0 * w_0, h_0 * w_0] the dense level's log attention
    trajectories     list per PatchMatch level, per iteration (candidate positions (x, y)
                     [B, h, w, K, 2], their weights [B, h, w, K]) (PatchMatchLevel's
                     `trajectory`)
    features         list per level, the input branch's normalised U-Net features
    exemplar_features  the same for the exemplar branch
and, when `image` (the ground truth) is passed, `target_features`: the exemplar
branch's features of (image, label), which the alignment loss compares with `features`.

Level l (0 = coarsest) is at S / 2^(3 - l): the official four levels are S/8 ... S.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras
import tensorflow as tf

from cocosnet_tf.config import ModelConfig
from cocosnet_tf.layers.blocks import SPADE_HIDDEN, attached, average_pool, conv
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.norms import l2_normalize_channels
from cocosnet_tf.models.cocosnet.correspondence import sampling
from cocosnet_tf.models.cocosnet.correspondence.alignment import AlignmentUNet
from cocosnet_tf.models.cocosnet.correspondence.patchmatch import PatchMatchLevel, initial_offsets, row_column_grid
from cocosnet_tf.runtime import current_runtime

COARSEST_FACTOR = 8


def level_factor(level: int) -> int:
    """Downsampling factor of correspondence level `level` (0 = coarsest, S/8)."""
    return COARSEST_FACTOR >> level


def dense_level(queries, values, exemplar, temperature, cycle: bool, hard_best: bool, chunk: int = 0,
                locality: float = 0.0):
    """Softmax attention over every exemplar position (the coarsest level).

    queries, values [B, h, w, C]; exemplar [B, h, w, 3] pooled. Returns (warp,
    cycle_warp or None, best position (row, col) [B, h, w, 2], log attention [B, N, N]
    or None when chunked). With `hard_best` the best
    position is the argmax, as the official code; otherwise it still *is* the argmax
    but its gradient is that of the attention-weighted position (straight-through), so
    that the finer levels' losses reach this level.

    A positive `chunk` (inference) attends dense_rows(chunk) queries at a time, so that
    the N x N score matrix is never whole: at 1024x1024 it would be 16384^2 floats (1 GiB)
    for each of the scores, the softmax and the cycle's transposed softmax.
    """
    b, h, w = tf.shape(queries)[0], tf.shape(queries)[1], tf.shape(queries)[2]
    n = h * w
    q = tf.reshape(queries, [b, n, -1])
    r = tf.reshape(values, [b, n, -1])
    pooled = tf.reshape(exemplar, [b, n, 3])
    grid = tf.reshape(row_column_grid(h, w, queries.dtype), [n, 2])
    scaled = grid / tf.cast(tf.maximum(h, w), grid.dtype)

    def scores(rows, rows_grid, keys):  # [B, m, N]: similarity / temperature, minus the locality prior
        logits = tf.matmul(rows, keys, transpose_b=True) / temperature
        if locality:
            logits -= locality * tf.reduce_sum(tf.square(rows_grid[..., :, None, :] - scaled), -1)
        return logits

    if chunk > 0:
        rows = dense_rows(chunk)
        positions = tf.broadcast_to(scaled, [b, n, 2])  # each row's own position, chunked with it

        def forward(q_rows, q_grid):
            logits = scores(q_rows, q_grid, r)
            best = tf.gather(grid, tf.argmax(logits, axis=-1, output_type=tf.int32))
            return tf.concat([tf.matmul(tf.nn.softmax(logits, axis=-1), pooled), best], axis=-1)

        warp_best = sampling.chunked(forward, [q, positions], rows)
        warp, best = warp_best[..., :3], warp_best[..., 3:]
        cycle_warp = log_attention = None
        if cycle:  # backwards: each exemplar position attends over the input's
            cycle_warp = sampling.chunked(
                lambda r_rows, r_grid: tf.matmul(tf.nn.softmax(scores(r_rows, r_grid, q)), warp),
                [r, positions], rows)
    else:
        logits = scores(q, scaled, r)  # [B, N, N]
        attention = tf.nn.softmax(logits, axis=-1)
        log_attention = tf.nn.log_softmax(logits, axis=-1)  # the flow supervision's; unused, it is pruned
        warp = tf.matmul(attention, pooled)
        cycle_warp = None
        if cycle:
            cycle_warp = tf.matmul(tf.nn.softmax(tf.transpose(logits, [0, 2, 1]), axis=-1), warp)
        best = tf.gather(grid, tf.argmax(logits, axis=-1, output_type=tf.int32))
        if not hard_best:
            soft = tf.matmul(attention, tf.broadcast_to(grid, [b, n, 2]))
            best = soft + tf.stop_gradient(best - soft)
    if cycle_warp is not None:
        cycle_warp = tf.reshape(cycle_warp, [b, h, w, 3])
    return tf.reshape(warp, [b, h, w, 3]), cycle_warp, tf.reshape(best, [b, h, w, 2]), log_attention


def dense_rows(chunk: int) -> int:
    """Queries per chunk of the dense level: a PatchMatch chunk scores chunk x 3K
    candidates, the dense level scores rows x N; chunk / 16 rows keeps a 128x128 coarsest
    level (N = 16384) at 64 MiB of scores per chunk."""
    return max(1, chunk // 16)


def swap_xy(positions: tf.Tensor) -> tf.Tensor:
    return tf.reverse(positions, axis=[-1])


@keras.saving.register_keras_serializable("cocosnet")
class CorrespondenceNet(Composite, keras.Model):
    """Its keywords are the model section's keys; its chunks and recomputation are the
    runtime settings it was made with (cocosnet_tf.runtime)."""

    def __init__(self, semantic_nc: int, nef: int = 32, corr_levels: int = 4, temperature: float = 0.01,
                 locality: float = 0.0, patchmatch_iterations: int = 5, sampling: str = "bilinear",
                 gru_hidden: int = 32, spade_hidden: int = SPADE_HIDDEN, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.semantic_nc, self.nef, self.corr_levels = semantic_nc, nef, corr_levels
        self.temperature, self.locality, self.patchmatch_iterations = temperature, locality, patchmatch_iterations
        self.sampling, self.gru_hidden, self.spade_hidden, self.seed = sampling, gru_hidden, spade_hidden, seed
        self.runtime = current_runtime()
        self.unet_label = AlignmentUNet(nef, corr_levels, spade_hidden, name="adaptive_model_seg")
        self.unet_exemplar = AlignmentUNet(nef, corr_levels, spade_hidden, name="adaptive_model_img")
        self.theta = attached(self, "theta", [conv(nef, 1, name=f"theta_{i}") for i in range(corr_levels)])
        self.phi = attached(self, "phi", [conv(nef, 1, name=f"phi_{i}") for i in range(corr_levels)])
        self.patch_match = attached(self, "patch_match", [
            PatchMatchLevel(patchmatch_iterations=patchmatch_iterations, temperature=temperature,
                            gru_hidden=gru_hidden, sampling=sampling, seed=seed + i, name=f"patch_match_{i}")
            for i in range(1, corr_levels)
        ])

    @classmethod
    def from_config_object(cls, model: ModelConfig, semantic_nc: int, **kwargs) -> "CorrespondenceNet":
        """The network of the config's model section."""
        return cls(semantic_nc, nef=model.nef, corr_levels=model.corr_levels, temperature=model.temperature,
                   locality=model.locality, patchmatch_iterations=model.patchmatch_iterations,
                   sampling=model.sampling, gru_hidden=model.gru_hidden, spade_hidden=model.spade_hidden, **kwargs)

    def _check(self, label, exemplar, exemplar_label, image):
        named = {"label": label, "exemplar": exemplar, "exemplar_label": exemplar_label}
        if image is not None:
            named["image"] = image
        channels = {"label": self.semantic_nc, "exemplar_label": self.semantic_nc, "exemplar": 3, "image": 3}
        for name, tensor in named.items():
            if tensor.shape.rank != 4:
                raise ValueError(f"{name} must be [batch, height, width, channels], got shape {tensor.shape}")
            if tensor.shape[-1] is not None and tensor.shape[-1] != channels[name]:
                raise ValueError(f"{name} has {tensor.shape[-1]} channels, expected {channels[name]}")
        sizes = {name: tuple(t.shape[1:3]) for name, t in named.items()}
        known = {s for s in sizes.values() if None not in s}
        if len(known) > 1:
            raise ValueError(f"label, exemplar and exemplar_label (and image) must share one size, got {sizes}")
        for h, w in known:
            if h % COARSEST_FACTOR or w % COARSEST_FACTOR or min(h, w) < 2 * COARSEST_FACTOR:
                raise ValueError(f"image size {h}x{w}: both sides must be multiples of {COARSEST_FACTOR} "
                                 f"and at least {2 * COARSEST_FACTOR} (the coarsest level is 1/{COARSEST_FACTOR})")

    def align(self, image, label, training=False):
        """The exemplar branch's normalised features of (image, label), per level."""
        return [l2_normalize_channels(f, centre=False)
                for f in self.unet_exemplar(tf.concat([image, label], -1), training=training)]

    def projections(self, label, exemplar, exemplar_label, training=False):
        """Per level: (features, exemplar_features, theta, phi); theta and phi are the
        channel-centred projections the matching compares."""
        features = [l2_normalize_channels(f, centre=False) for f in self.unet_label(label, training=training)]
        exemplar_features = self.align(exemplar, exemplar_label, training)
        theta = [l2_normalize_channels(t(f), centre=True) for t, f in zip(self.theta, features)]
        return features, exemplar_features, theta, self.project_exemplar(exemplar_features)

    def project_exemplar(self, features):
        """phi: the channel-centred projections of exemplar-branch features, per level."""
        return [l2_normalize_channels(p(f), centre=True) for p, f in zip(self.phi, features)]

    def call(self, label, exemplar, exemplar_label, image=None, training=False, step=0):
        self._check(label, exemplar, exemplar_label, image)
        features, exemplar_features, theta, phi = self.projections(label, exemplar, exemplar_label, training)
        out = {**self.match(theta, phi, exemplar, training, step),
               "features": features, "exemplar_features": exemplar_features}
        if image is not None:
            out["target_features"] = self.align(image, label, training)
        return out

    def match(self, theta, phi, exemplar, training=False, step=0):
        """The matching of projected features, per level (coarse to fine) theta of the
        input and phi of the exemplar: the dense coarsest level, then PatchMatch at every
        finer one, each started from the previous one's best match. Returns the module
        docstring's keys but the features."""
        bilinear = self.sampling == "bilinear"
        warp, cycle_warp, best, log_attention = dense_level(
            theta[0], phi[0], average_pool(exemplar, COARSEST_FACTOR), self.temperature, cycle=True,
            hard_best=not bilinear, chunk=0 if training else self.runtime.chunk, locality=self.locality)
        # made before the finer levels' ops, as before refine() existed: made after them,
        # three demo steps ended with other weights, and differently in two runs
        dense_best = swap_xy(best)
        refined = self.refine(theta, phi, exemplar, best if bilinear else tf.stop_gradient(best), training, step)
        out = {"warps": [warp] + refined["warps"], "cycle_warp": cycle_warp, "positions": refined["positions"],
               "weights": refined["weights"], "dense_best": dense_best}
        if training:
            out.update(dense_log_attention=log_attention, trajectories=refined["trajectories"])
        return out

    def refine(self, theta, phi, exemplar, best, training=False, step=0):
        """PatchMatch at every finer level, started from `best` [B, h_0, w_0, 2], the
        coarsest level's match (row, column). Returns per finer level: warps, positions
        (x, y) and weights, and in training trajectories (x, y)."""
        out = {"warps": [], "positions": [], "weights": [], "trajectories": []}
        for level, patch_match in enumerate(self.patch_match, start=1):
            result = patch_match(theta[level], phi[level], average_pool(exemplar, level_factor(level)),
                                 initial_offsets(best), training=training, step=step)
            out["warps"].append(result["warp"])
            out["positions"].append(swap_xy(result["positions"]))
            out["weights"].append(result["weights"])
            if training:
                out["trajectories"].append([(swap_xy(p), w) for p, w in result["trajectory"]])
            # the next level starts from this level's first candidate, as the official code
            best = result["positions"][..., 0, :]
        return out

    @contextmanager
    def flow_heads_zeroed(self):
        """Within the block, the update blocks' flow heads are zero: PatchMatch keeps its
        propagation and selection but no ConvGRU correction (the refinement's ablation).
        The weights are restored after."""
        heads = [variable for level in self.patch_match for variable in level.update.head_2.weights]
        kept = [variable.numpy() for variable in heads]
        for variable in heads:
            variable.assign(tf.zeros_like(variable))
        try:
            yield
        finally:
            for variable, value in zip(heads, kept):
                variable.assign(value)

    def get_config(self):
        return {**super().get_config(), "semantic_nc": self.semantic_nc, "nef": self.nef,
                "corr_levels": self.corr_levels, "temperature": self.temperature, "locality": self.locality,
                "patchmatch_iterations": self.patchmatch_iterations, "sampling": self.sampling,
                "gru_hidden": self.gru_hidden, "spade_hidden": self.spade_hidden, "seed": self.seed}
