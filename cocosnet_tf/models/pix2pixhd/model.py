"""pix2pixHD as one trainable Keras model: generator, feature encoder, discriminator.

`call(label, features)` is inference: the image for a semantic map (with the instance
boundary channel under data.use_instance) and, with an encoder, a feature map of one
vector per region (`encode` of a photo, or clusters.feature_map of chosen clusters).
Regions are the semantic map's classes (the official `label_feat`): the data carries
boundaries, not instance ids, and in the synthetic scenes every object is alone in its
class, so there a class region is an instance.

`compile()` then `fit` train it under any tf.distribute strategy whose scope it was made
in, as CoCosNet: each step is a generator step (generator and encoder) and a
discriminator step, with CoCosNet's optimisers, discriminator and hinge, feature
matching and VGG losses (cocosnet_tf.models.training), each loss this replica's share of the
global-batch mean. losses.reconstruction is an L1 to the target on every pair: the
encoder reads the target itself, so the target is always the right answer. The phase
(phases.py) follows the generator optimiser's step: the global phase trains G1 on the
coarsest level of the input against the target pooled as much; fit retraces the step
when the phase changes.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cocosnet_tf.config import Config
from cocosnet_tf.discriminator import MultiscaleDiscriminator
from cocosnet_tf.layers.blocks import init_gain
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.spectral import power_iterations
from cocosnet_tf.losses import vgg
from cocosnet_tf.losses.adversarial import per_sample_mean
from cocosnet_tf.models.training import (LossNetworks, default_optimisers, discriminate, discriminator_losses,
                                         full_precision, generator_adversarial, global_losses)
from cocosnet_tf.models.pix2pixhd.encoder import FeatureEncoder, generator_input
from cocosnet_tf.models.pix2pixhd.generator import Pix2PixHDGenerator
from cocosnet_tf.models.pix2pixhd.phases import phase_at, phase_variables

TRAIN_KEYS = ("label", "image")


def class_map(label: tf.Tensor, classes: int) -> tf.Tensor:
    """(B, H, W) int32 class ids of a semantic map whose first `classes` channels are one-hot."""
    return tf.argmax(label[..., :classes], axis=-1, output_type=tf.int32)


class PhaseSchedule(keras.callbacks.Callback):
    """Sets the model's phase from its generator optimiser's step before every step, and
    has fit trace the step function again when it changes (the phase picks the
    variables, and so the graph)."""

    def on_train_begin(self, logs=None):
        self.on_train_batch_begin(0)

    def on_train_batch_begin(self, batch, logs=None):
        phase = self.model.scheduled_phase()
        if phase != self.model.phase:
            self.model.phase = phase
            self.model.make_train_function(force=True)


class Pix2PixHD(Composite, keras.Model):
    def __init__(self, config: Config, semantic_nc: int, **kwargs):
        super().__init__(**kwargs)
        self.config, self.semantic_nc = config, semantic_nc
        m, p = config.model, config.model.pix2pixhd
        # the class channels (the don't-care one included), without the boundary channel
        self.classes = max(semantic_nc - int(config.data.use_instance), 1)
        self.full_precision = full_precision(config)
        with init_gain(m.init_gain):
            self.generator = Pix2PixHDGenerator(3, m.ngf, p.n_downsample_global, p.n_blocks_global,
                                                p.local_enhancers, p.n_blocks_local, name="generator")
            self.encoder = (FeatureEncoder(p.feature_channels, p.nef, p.n_downsample_encoder, name="encoder")
                            if p.feature_channels else None)
            self.discriminator = MultiscaleDiscriminator(m.ndf, discriminator_layers=m.discriminator_layers,
                                                         num_discriminators=m.num_discriminators, name="discriminator")
        self._loss_networks = LossNetworks()
        self.global_batch = config.train.batch_size
        self.phase = None  # set by PhaseSchedule (fit) or by hand before train_step
        self.centres = None  # {class id: (k, feature_channels)}, set by use_clusters
        self.cluster_choices: dict[int, int] = {}

    # ------------------------------------------------------------------ inference
    def call(self, label, features=None, training=False):
        if (features is None) != (self.encoder is None):
            raise ValueError(f"Pix2PixHD with feature_channels {self.config.model.pix2pixhd.feature_channels} "
                             f"takes {'a feature map' if self.encoder else 'no feature map'} beside the label")
        x = label if features is None else generator_input(label, features)
        return tf.cast(self.generator(x, training=training), self.full_precision)

    def encode(self, image, label):
        """The encoder's features of `image`, one vector per class region of `label`."""
        return self.encoder(image, class_map(label, self.classes))

    def use_clusters(self, centres: dict[int, np.ndarray]) -> None:
        """Take the per-class feature clusters (clusters.load_clusters) that
        cluster_features picks from."""
        channels = self.config.model.pix2pixhd.feature_channels
        for label_id, c in centres.items():
            if c.ndim != 2 or c.shape[1] != channels or not 0 <= label_id < self.classes:
                raise ValueError(f"the clusters of class {label_id} are {list(c.shape)}; this model has classes "
                                 f"0..{self.classes - 1} and {channels} feature channels")
        self.centres, self.cluster_choices = centres, {}

    def choose_clusters(self, choices: dict[int, int]) -> None:
        """The cluster cluster_features takes per class (class -> cluster; cluster 0 for
        the others)."""
        if self.centres is None:
            raise ValueError("no feature clusters: run python -m cocosnet_tf.pix2pixhd_features --run RUN first")
        for label_id, k in choices.items():
            found = len(self.centres.get(label_id, []))
            if not 0 <= k < found:
                raise ValueError(f"class {label_id} has {found} feature clusters; cluster {k} was chosen")
        self.cluster_choices = dict(choices)

    def cluster_features(self, label) -> tf.Tensor:
        """The feature map of the chosen clusters (choose_clusters): every region of class
        c holds c's chosen centre; classes without clusters hold zeros."""
        if self.centres is None:
            raise ValueError("no feature clusters: run python -m cocosnet_tf.pix2pixhd_features --run RUN first")
        choices = self.cluster_choices
        table = np.zeros([self.classes, self.config.model.pix2pixhd.feature_channels], np.float32)
        for label_id, c in self.centres.items():
            table[label_id] = c[choices.get(label_id, 0)]
        return tf.gather(tf.constant(table, self.full_precision), class_map(label, self.classes))

    def photo_features(self, label, photo, photo_label, fallback=None) -> tf.Tensor:
        """The feature map of `photo`'s appearance: every region of class c in `label`
        holds the encoder's vector of c's region in the photo (`photo_label` its
        semantic map); classes the photo lacks keep `fallback`'s features (zeros when
        None)."""
        encoded = self.encode(photo, photo_label).numpy()
        classes = class_map(label, self.classes).numpy()
        photo_classes = class_map(photo_label, self.classes).numpy()
        out = np.zeros(encoded.shape, np.float32) if fallback is None else np.array(fallback, np.float32)
        for b in range(len(classes)):
            for label_id in np.unique(photo_classes[b]):
                out[b][classes[b] == label_id] = encoded[b][photo_classes[b] == label_id].mean(axis=0)
        return tf.constant(out, self.full_precision)

    def build_inference(self, height: int, width: int) -> None:
        """Create the generator's variables (G1's own image head included) and the encoder's."""
        label = tf.zeros([1, height, width, self.semantic_nc])
        features = None if self.encoder is None else self.encode(tf.zeros([1, height, width, 3]), label)
        self(label, features)
        x = label if features is None else generator_input(label, features)
        self.generator.coarse(x)

    def build_all(self, height: int, width: int) -> None:
        """Create every variable (before optimisers and checkpoints need them)."""
        self.build_inference(height, width)
        self.discriminator(tf.zeros([1, height, width, self.semantic_nc + 3]))

    def generator_variables(self, phase: str = "all") -> list:
        return phase_variables(self.generator, phase, self.encoder)

    def scheduled_phase(self) -> str:
        t = self.config.train.pix2pixhd
        return phase_at(int(self.g_optimizer.iterations.numpy()), self.generator.local_enhancers, t.global_steps,
                        t.fix_global_steps)

    # ------------------------------------------------------------------ training
    def compile(self, g_optimizer: keras.optimizers.Optimizer | None = None,
                d_optimizer: keras.optimizers.Optimizer | None = None, vgg_model: keras.Model | None = None) -> None:
        """Set up training for `fit`; call in the strategy scope, after `build_all`. The
        optimisers and the step's compilation are CoCosNet's (CoCosNet.compile); the
        VGG network is loaded when losses.vgg is on."""
        t, w = self.config.train, self.config.losses
        self.g_optimizer, self.d_optimizer = default_optimisers(t, g_optimizer, d_optimizer)
        super().compile(optimizer=None, jit_compile=False)
        if w.vgg > 0:
            self._loss_networks.vgg = vgg_model or vgg.build_vgg(vgg.find_weights(w.vgg_weights, w.vgg_network),
                                                                 w.vgg_network)
        if not all(net is None or net.built for net in (self.generator, self.encoder, self.discriminator)):
            raise ValueError("Pix2PixHD.compile: call build_all(height, width) first, so that the optimisers are "
                             "built for every variable")
        # one Adam for every phase: each phase's steps update their own variables' moments
        self.g_optimizer.build(self.generator.trainable_variables
                               + (self.encoder.trainable_variables if self.encoder is not None else []))
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self._generator_gradients = tf.function(self._generator_gradients_eager, jit_compile=t.jit_compile)
        self._discriminator_gradients = tf.function(self._discriminator_gradients_eager, jit_compile=t.jit_compile)

    def fit(self, *args, callbacks=None, **kwargs):
        """keras.Model.fit, with the phase schedule."""
        return super().fit(*args, callbacks=[PhaseSchedule(), *(callbacks or [])], **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: compile requires every variable made (see CoCosNet's)."""

    def _average(self, per_sample: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_sample, global_batch_size=self.global_batch)

    def generator_losses(self, batch, phase: str):
        """(dict of weighted per-replica loss shares, (label, fake, real) as the
        discriminator sees them: at the coarse size in the global phase)."""
        w = self.config.losses
        label, image = batch["label"], batch["image"]
        features = None if self.encoder is None else self.encode(image, label)
        x = label if features is None else generator_input(label, features)
        if phase == "global":
            fake = tf.cast(self.generator.coarse(x), self.full_precision)
            label, image = self.generator.pyramid(label)[-1], self.generator.pyramid(image)[-1]
        else:
            fake = tf.cast(self.generator(x), self.full_precision)
        losses = generator_adversarial(*discriminate(self.discriminator, label, fake, image, self.full_precision),
                                       w, self._average)
        if w.reconstruction > 0:
            losses["reconstruction"] = w.reconstruction * self._average(per_sample_mean(tf.abs(fake - image)))
        if self._loss_networks.vgg is not None:
            losses["vgg"] = w.vgg * self._average(vgg.feature_matching(vgg.features(self._loss_networks.vgg, fake),
                                                                       vgg.features(self._loss_networks.vgg, image)))
        return losses, (label, fake, image)

    def _generator_gradients_eager(self, batch, phase: str):
        variables = self.generator_variables(phase)
        with tf.GradientTape() as tape:
            losses, seen = self.generator_losses(batch, phase)
            total = tf.add_n(list(losses.values()))
            scaled = self.g_optimizer.scale_loss(total)  # identity unless a LossScaleOptimizer
        return tape.gradient(scaled, variables), {**losses, "total": total}, seen

    def _discriminator_gradients_eager(self, label, fake, real):
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            losses = discriminator_losses(self.discriminator, label, fake, real, self.config.losses.gan,
                                          self._average, self.full_precision)
            scaled = self.d_optimizer.scale_loss(losses["real"] + losses["fake"])
        return tape.gradient(scaled, variables), losses

    def train_step(self, batch):
        """One training step of the current phase on this replica's part of `batch` -> the
        global batch's losses."""
        if self.phase is None:
            raise ValueError("Pix2PixHD.train_step: no phase set; fit sets it (PhaseSchedule), or set "
                             "model.phase = model.scheduled_phase()")
        batch = {k: tf.cast(batch[k], self.full_precision) for k in TRAIN_KEYS}
        # spectral norm's power iterations, one per discriminator forward as PyTorch's
        power_iterations(self.discriminator)
        g_grads, g_losses, (label, fake, real) = self._generator_gradients(batch, self.phase)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator_variables(self.phase)))
        power_iterations(self.discriminator)
        d_grads, d_losses = self._discriminator_gradients(label, fake, real)
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return global_losses({**{f"G_{k}": v for k, v in g_losses.items()},
                              **{f"D_{k}": v for k, v in d_losses.items()}})
