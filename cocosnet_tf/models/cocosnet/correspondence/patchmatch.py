"""Hierarchical PatchMatch with a ConvGRU update (step 3 of the algorithm in docs/design.md).

Each position of a level holds K candidate *offsets* (row, column), relative to the
position itself, like the official code. An iteration propagates along one axis
(own K plus each neighbour's K, applied at the own position: 3K), evaluates
<q, r> / temperature and keeps the top K, then along the other axis, and then lets the
update block add a correction to every offset. Candidate selection is discrete and
carries no gradient; the selected offset *values* do, so that with bilinear sampling
the gradient of the final warp reaches every update of the ConvGRU.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from cocosnet_tf.layers.blocks import upsample2
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.convgru import UPDATE_REACH, HiddenInit, UpdateBlock
from cocosnet_tf.layers.remat import banded, rematerialized
from cocosnet_tf.models.cocosnet.correspondence import sampling
from cocosnet_tf.runtime import current_runtime

WINDOW = 4  # the coarse match, doubled, plus a 4x4 window ...
DILATION = 2  # ... of offsets -2, 0, 2, 4 along each axis
CANDIDATES = WINDOW * WINDOW  # K: the window's candidates, kept by every selection (the official 16)


def row_column_grid(height, width, dtype=tf.float32) -> tf.Tensor:
    """[H, W, 2] (row, column) of every pixel."""
    rows, cols = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    return tf.cast(tf.stack([rows, cols], axis=-1), dtype)


def window_offsets(dtype=tf.float32) -> tf.Tensor:
    """[16, 2]: candidate c = 4 i + j has offset ((i - 1) * 2, (j - 1) * 2), official order."""
    steps = (tf.range(WINDOW, dtype=dtype) - 1.0) * DILATION
    rows, cols = tf.meshgrid(steps, steps, indexing="ij")
    return tf.reshape(tf.stack([rows, cols], axis=-1), [-1, 2])


def initial_offsets(best: tf.Tensor) -> tf.Tensor:
    """Coarse best positions [B, h, w, 2] -> fine candidate offsets [B, 2h, 2w, 16, 2].

    offset = 2 * (best - own coarse position) + window, copied to the 2x2 children
    (nearest upsampling), exactly as the official initialisation.
    """
    h, w = tf.shape(best)[1], tf.shape(best)[2]
    coarse = 2.0 * (best - row_column_grid(h, w, best.dtype))
    return upsample2(coarse)[:, :, :, None, :] + window_offsets(best.dtype)


def propagate(offsets: tf.Tensor, horizontal) -> tf.Tensor:
    """[B, H, W, K, 2] -> [B, H, W, 3K, 2]: (previous neighbour, own, next neighbour).

    `horizontal` (a Python bool or a boolean scalar tensor) picks the axis. Outside the
    map a neighbour's offsets are zero, that is, the position itself (the official zero
    padding). Neighbours are gathered by flat index, so a random axis needs no tf.cond:
    under XLA the gradient of a cond around the evaluation made training far slower.
    """
    shape = tf.shape(offsets)
    b, h, w, k = shape[0], shape[1], shape[2], shape[3]
    rows, cols = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    coordinate = tf.where(horizontal, cols, rows)
    size = tf.where(horizontal, w, h)
    step = tf.where(horizontal, 1, w)
    index = rows * w + cols
    flat = tf.reshape(offsets, [b, h * w, k, 2])

    def neighbour(direction, valid):
        picked = tf.gather(flat, tf.reshape(tf.where(valid, index + direction * step, index), [-1]), axis=1)
        return picked * tf.cast(tf.reshape(valid, [1, -1, 1, 1]), offsets.dtype)

    candidates = [neighbour(-1, coordinate > 0), flat, neighbour(1, coordinate < size - 1)]
    return tf.reshape(tf.concat(candidates, axis=2), [b, h, w, 3 * k, 2])


class LevelMaps(NamedTuple):
    """What every iteration of a level reads: the maps without gradient, flattened
    [B, N, C], the (row, column) of every pixel [H, W, 2], and the map's size."""

    queries: tf.Tensor
    values: tf.Tensor
    grid: tf.Tensor
    height: tf.Tensor
    width: tf.Tensor


@keras.saving.register_keras_serializable("cocosnet")
class PatchMatchLevel(Composite, keras.layers.Layer):
    """One finer level: T iterations of propagation + evaluation + ConvGRU, final warp.
    Its chunks and recomputation are the runtime settings it was made with."""

    def __init__(self, patchmatch_iterations: int = 5, temperature: float = 0.01, gru_hidden: int = 32,
                 sampling: str = "bilinear", seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.patchmatch_iterations, self.temperature, self.gru_hidden = patchmatch_iterations, temperature, gru_hidden
        self.sampling, self.seed = sampling, seed
        self.runtime = current_runtime()
        self.hidden_init = HiddenInit(gru_hidden, name="initial_layer")
        self.update = UpdateBlock(CANDIDATES, gru_hidden, name="refine_net")

    # -- the steps of an iteration
    def _select(self, candidates, maps: LevelMaps):
        """Evaluate candidate offsets [B,H,W,3K,2] and select the top K, without gradient
        (discrete), chunked over positions: (index [B,H,W,K] into the 3K candidates,
        probabilities [B,H,W,K])."""
        b = tf.shape(candidates)[0]
        height, width = maps.height, maps.width
        n = height * width
        positions = tf.reshape(tf.stop_gradient(candidates), [b, n, -1, 2]) + tf.reshape(maps.grid, [1, n, 1, 2])
        if self.sampling == "bilinear":
            # selection carries no gradient: score the nearest pixel (one gather, not four)
            positions = tf.round(positions)
        else:
            positions = sampling.nearest_position(positions, height, width)

        def score(q, p):
            return sampling.scores(q, maps.values, p, height, width, "nearest", self.temperature,
                                   self.runtime.compiled_ops)

        logits = sampling.chunked(score, [maps.queries, positions], self.runtime.chunk)
        top, index = tf.math.top_k(logits, k=CANDIDATES)
        probabilities = tf.exp(top - tf.reduce_logsumexp(logits, axis=-1, keepdims=True))
        shape = tf.concat([tf.shape(candidates)[:3], [CANDIDATES]], 0)
        return tf.reshape(index, shape), tf.reshape(probabilities, shape)

    def _gather_selected(self, candidates, index, cells, height, width):
        """The selected candidates' offsets [B,h,w,K,2] from candidates [B,h,w,3K,2] and
        index [B,h,w,K] at pixels cells [1,h,w,2] (the whole map or a band of its rows, of
        height x width): their values, which keep their gradient (bilinear), or, as the
        official evaluation, the offsets of the pixels that were scored (nearest)."""
        if self.sampling == "nearest":
            cell = cells[..., None, :]
            candidates = sampling.nearest_position(candidates + cell, height, width) - cell
        return tf.gather(candidates, index, batch_dims=3)

    def _propagate_and_select(self, offsets, horizontal, maps: LevelMaps):
        """Propagate along one axis, evaluate the 3K candidates and keep the best K: the
        choice is made without gradient, the chosen offsets are gathered with it.
        -> (offsets [B,H,W,K,2], index [B,H,W,K] into the 3K, probabilities [B,H,W,K])."""
        candidates = propagate(offsets, horizontal)
        index, probabilities = self._select(candidates, maps)
        chosen = self._gather_selected(candidates, index, maps.grid[None], maps.height, maps.width)
        return chosen, index, probabilities

    def _update(self, hidden, offsets, probabilities):
        """The ConvGRU's correction of every offset -> (hidden, offsets)."""
        flow = tf.concat([offsets[..., 0], offsets[..., 1]], axis=-1)  # K rows, then K columns
        hidden, delta = self.update(hidden, tf.stop_gradient(probabilities), flow)
        return hidden, offsets + tf.stack([delta[..., :CANDIDATES], delta[..., CANDIDATES:]], axis=-1)

    def _iterate(self, hidden, offsets, horizontal_first, maps: LevelMaps):
        """One iteration, as the paper: propagate, evaluate and select along one axis, then
        along the other; then update. -> (hidden, offsets, probabilities of the selection)."""
        offsets, _, _ = self._propagate_and_select(offsets, horizontal_first, maps)
        offsets, _, probabilities = self._propagate_and_select(offsets, tf.logical_not(horizontal_first), maps)
        hidden, offsets = self._update(hidden, offsets, probabilities)
        return hidden, offsets, probabilities

    def _iterate_recomputed(self, hidden, offsets, horizontal_first, maps: LevelMaps):
        """`_iterate` with its differentiable part recomputed in the backward pass, a band
        of rows at a time: the selections (which need the scores) run once, without
        gradient; then propagation, gathering and the update replay from (hidden, offsets)
        and the selected indices (3K candidates and their neighbours' gathers per position
        and axis are not kept for the backward pass)."""
        axes = (horizontal_first, tf.logical_not(horizontal_first))
        chosen, indices = tf.stop_gradient(offsets), []
        for horizontal in axes:
            chosen, index, probabilities = self._propagate_and_select(chosen, horizontal, maps)
            indices.append(index)

        def replay(hidden, offsets, index_1, index_2, probabilities, cells):
            for horizontal, index in zip(axes, (index_1, index_2)):
                offsets = self._gather_selected(propagate(offsets, horizontal), index, cells, maps.height, maps.width)
            return self._update(hidden, offsets, probabilities)

        # two propagations reach one row each, then the update block's convolutions
        reach = 2 + UPDATE_REACH
        hidden, offsets = banded(replay, True, reach, self.runtime.recompute_band)(
            hidden, offsets, *indices, probabilities, maps.grid[None])
        return hidden, offsets, probabilities

    def call(self, features, exemplar_features, exemplar, init_offsets, training=False, step=0):
        """features, exemplar_features [B,H,W,C] (normalised), exemplar [B,H,W,3] (pooled),
        init_offsets [B,H,W,K,2] -> dict(warp, positions (row, col), weights), and in
        training `trajectory`: per iteration (candidate positions [B,H,W,K,2] (row, col),
        their weights [B,H,W,K]): the updated candidates with their selection
        probabilities (without gradient), the last one the final output's (the flow
        supervision reads them).

        In training the propagation order is random, drawn statelessly from (seed, step,
        iteration): every replica and worker draws the same, and a resumed run (whose
        step comes from the checkpointed optimiser) continues the same sequence."""
        height, width = tf.shape(features)[1], tf.shape(features)[2]
        b, c = tf.shape(features)[0], features.shape[-1]
        n = height * width
        grid = row_column_grid(height, width, features.dtype)
        queries = tf.reshape(features, [b, n, c])
        values = tf.reshape(exemplar_features, [b, n, c])
        maps = LevelMaps(tf.stop_gradient(queries), tf.stop_gradient(values), grid, height, width)
        recompute = training and self.runtime.recompute
        iterate = self._iterate_recomputed if recompute else self._iterate
        hidden = rematerialized(self.hidden_init, recompute)(features, exemplar_features)
        offsets = init_offsets
        trajectory = []
        for t in range(self.patchmatch_iterations):
            # the official code picks the propagation order at random in training
            horizontal_first = self._random_order(step, t) if training else True
            hidden, offsets, probabilities = iterate(hidden, offsets, horizontal_first, maps)
            if training and t < self.patchmatch_iterations - 1:
                share = probabilities / tf.reduce_sum(probabilities, axis=-1, keepdims=True)
                trajectory.append((offsets + grid[:, :, None, :], share))
        positions = tf.reshape(offsets, [b, n, CANDIDATES, 2]) + tf.reshape(grid, [1, n, 1, 2])
        pooled = tf.reshape(exemplar, [b, n, exemplar.shape[-1]])
        warp_weights = self._final_warp(queries, values, pooled, positions, height, width, training)
        warp, weights = warp_weights[..., :3], warp_weights[..., 3:]
        shape = tf.shape(features)[:3]
        positions = self._sampled_positions(positions, height, width)
        out = {
            "warp": tf.reshape(warp, tf.concat([shape, [3]], 0)),
            "positions": tf.reshape(positions, tf.concat([shape, [CANDIDATES, 2]], 0)),
            "weights": tf.reshape(weights, tf.concat([shape, [CANDIDATES]], 0)),
        }
        if training:
            out["trajectory"] = trajectory + [(out["positions"], out["weights"])]
        return out

    def _random_order(self, step, iteration: int) -> tf.Tensor:
        counter = tf.cast(step, tf.int64) * self.patchmatch_iterations + iteration
        seed = tf.stack([tf.constant(self.seed, tf.int64), counter])
        return tf.random.stateless_uniform([], seed=seed) < 0.5

    def _final_warp(self, queries, values, pooled, positions, height, width, training):
        """[B, N, 3 + K]: the final step's warp and weights, chunk positions at a time in
        inference, and in training with recompute (whole otherwise: the gradient needs it)."""
        def step(q, p, v):
            return tf.concat(self._final_step(q, v, pooled, p, height, width), axis=-1)

        chunk = self.runtime.chunk
        if not training:
            return sampling.chunked(lambda q, p: step(q, p, values), [queries, positions], chunk)
        if self.runtime.recompute:
            return sampling.recomputed_chunks(step, [queries, positions], [values], chunk)
        return step(queries, positions, values)

    def _final_step(self, queries, values, pooled, positions, height, width):
        logits = sampling.scores(queries, values, positions, height, width, self.sampling, self.temperature,
                                 self.runtime.compiled_ops)
        weights = tf.nn.softmax(logits, axis=-1)
        colours = sampling.sample(pooled, positions, height, width, self.sampling)
        return tf.einsum("bmk,bmkc->bmc", weights, colours), weights

    def _sampled_positions(self, positions, height, width):
        """The positions the final step really sampled: clamped (the official index when nearest)."""
        if self.sampling == "nearest":
            return sampling.nearest_position(positions, height, width)
        return tf.stack(sampling.clamp(positions, height, width), axis=-1)

    def get_config(self):
        return {**super().get_config(), "patchmatch_iterations": self.patchmatch_iterations,
                "temperature": self.temperature, "gru_hidden": self.gru_hidden, "sampling": self.sampling,
                "seed": self.seed}
