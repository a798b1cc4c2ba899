"""CoCosNet: correspondence + generator for inference, plus discriminator and losses
for training.

`call(label, exemplar, exemplar_label)` is inference: {"image", "warps"}.
`compile()` sets up training and `fit` trains, under any tf.distribute strategy whose
scope the model was made in. `train_step(batch)` runs one generator step (correspondence
and generator, their Adam with lr/2) and one discriminator step (its Adam with 2 lr) on
the generator step's output, as the official trainer (with LSeSim, a step of its heads
between them); it returns every loss. Gradients are computed in `tf.function`s compiled
with XLA when `train.jit_compile` is set; applying them (and, under tf.distribute, the
all-reduce of the gradients) happens outside XLA.

Each loss is computed as this replica's share of the global-batch mean
(tf.nn.compute_average_loss); the step returns their sum over the replicas, the loss of
the global batch, on every replica.
"""

from __future__ import annotations

from dataclasses import asdict

import keras
import tensorflow as tf

from cocosnet_tf.config import Config
from cocosnet_tf.discriminator import MultiscaleDiscriminator
from cocosnet_tf.layers.blocks import init_gain
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.spectral import power_iterations
from cocosnet_tf.losses import contextual, correspondence, sesim, vgg
from cocosnet_tf.losses.adversarial import per_sample_mean
from cocosnet_tf.models.cocosnet.correspondence.network import CorrespondenceNet, level_factor
from cocosnet_tf.models.cocosnet.generator import Generator
from cocosnet_tf.models.training import (LossNetworks, default_optimisers, discriminate, discriminator_losses,
                                         full_precision, generator_adversarial, global_losses, global_policy,
                                         learning_rate, uses_vgg)
from cocosnet_tf.runtime import runtime_settings

TRAIN_KEYS = ("label", "image", "exemplar", "exemplar_label", "self_ref", "flow", "flow_mask")
SELF_REF_EPSILON = 1e-5


class CoCosNet(Composite, keras.Model):
    def __init__(self, config: Config, semantic_nc: int, **kwargs):
        super().__init__(**kwargs)
        self.config, self.semantic_nc = config, semantic_nc
        m = config.model
        self.full_precision = full_precision(config)
        # the correspondence stays float32 under a mixed policy: positions up to ~1000
        # pixels have no sub-pixel resolution in float16. Its sub-layers take the global
        # policy when they are made, so it is set while they are.
        with init_gain(m.init_gain), runtime_settings(config.runtime):
            with global_policy(self.full_precision.name):
                self.correspondence = CorrespondenceNet.from_config_object(
                    m, semantic_nc, dtype=self.full_precision.name, name="correspondence")
            self.generator = Generator(semantic_nc, corr_levels=m.corr_levels, ngf=m.ngf, spade_hidden=m.spade_hidden,
                                       name="generator")
            self.discriminator = MultiscaleDiscriminator(m.ndf, discriminator_layers=m.discriminator_layers,
                                                         num_discriminators=m.num_discriminators, name="discriminator")
        # the spatially-correlative loss; with losses.sesim.learned it holds trained heads,
        # checkpointed with the model
        self.sesim = (sesim.SpatialCorrelative(**asdict(config.losses.sesim), seed=config.train.seed,
                                               dtype=self.full_precision.name, name="sesim")
                      if config.losses.spatial_correlative > 0 else None)
        self._loss_networks = LossNetworks()
        self.global_batch = config.train.batch_size

    # ------------------------------------------------------------------ inference
    def call(self, label, exemplar, exemplar_label, training=False):
        out = self.correspondence(label, exemplar, exemplar_label, training=training)
        image = tf.cast(self.generator(label, out["warps"], training=training), self.full_precision)
        return {"image": image, "warps": out["warps"]}

    def build_inference(self, height: int, width: int) -> None:
        """Create the variables of the correspondence network and the generator."""
        label = tf.zeros([1, height, width, self.semantic_nc])
        self(label, tf.zeros([1, height, width, 3]), label)

    def build_all(self, height: int, width: int) -> None:
        """Create every variable (before optimisers and checkpoints need them)."""
        self.build_inference(height, width)
        self.discriminator(tf.zeros([1, height, width, self.semantic_nc + 3]))

    def generator_variables(self) -> list:
        return self.correspondence.trainable_variables + self.generator.trainable_variables

    # ------------------------------------------------------------------ training
    def compile(self, g_optimizer: keras.optimizers.Optimizer | None = None,
                d_optimizer: keras.optimizers.Optimizer | None = None, vgg_model: keras.Model | None = None,
                sesim_trunk: keras.Model | None = None) -> None:
        """Set up training for `fit`; call in the strategy scope, after `build_all`.

        The optimisers default to the official ones: Adam with config.train's betas at
        lr/2 and epsilon 1e-3 for the generator side, at 2 lr for the discriminator
        (train.decay_steps makes both rates decay). Under train.mixed_precision
        mixed_float16 each is wrapped in a LossScaleOptimizer, unless it is one. The VGG
        networks of the losses that are on are loaded (`vgg_model` and `sesim_trunk`, or
        the files the config names), and with learned LSeSim heads their own Adam. The
        step function is never compiled with XLA as a whole: only the gradient
        computations are, when train.jit_compile is set.
        """
        t = self.config.train
        g_optimizer, d_optimizer = default_optimisers(t, g_optimizer, d_optimizer)
        # two optimisers, so none is Keras' single `optimizer`; the gradient all-reduce and
        # the updates must stay outside XLA, so the step function is not jit-compiled
        super().compile(optimizer=None, jit_compile=False)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        if uses_vgg(self.config):
            w = self.config.losses
            self._loss_networks.vgg = vgg_model or vgg.build_vgg(vgg.find_weights(w.vgg_weights, w.vgg_network),
                                                                 w.vgg_network)
        if self.sesim is not None:
            self._loss_networks.sesim = sesim_trunk or sesim.build_trunk(sesim.find_trunk_weights())
        if not all(net.built for net in (self.correspondence, self.generator, self.discriminator)):
            raise ValueError("CoCosNet.compile: call build_all(height, width) first, so that the optimisers are "
                             "built for every variable")
        self.g_optimizer.build(self.generator_variables())
        self.d_optimizer.build(self.discriminator.trainable_variables)
        jit = t.jit_compile
        if self.sesim is not None and self.sesim.learned:
            # the heads' own Adam at the generator's rate, as the official code
            self.sesim.build()
            self.sesim_optimizer = keras.optimizers.Adam(learning_rate(t.lr / 2, t), beta_1=t.beta1, beta_2=t.beta2,
                                                         name="sesim_adam")
            self.sesim_optimizer.build(self.sesim.trainable_variables)
            self._sesim_gradients = tf.function(self._sesim_gradients_eager, jit_compile=jit)
        self._generator_gradients = tf.function(self._generator_gradients_eager, jit_compile=jit)
        self._discriminator_gradients = tf.function(self._discriminator_gradients_eager, jit_compile=jit)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: compile requires every variable made. Keras' own, under a
        strategy, reads a batch from an iterator of its own before fit's, which makes
        fit's the data's second iteration; a seeded stream that reshuffles on every
        iteration (cocosnet_tf.data.pipeline's) would then train on another order than
        on one device or in a resumed run."""

    def _average(self, per_sample: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_sample, global_batch_size=self.global_batch)

    @staticmethod
    def _self_ref_mean(batch, per_sample, self_ref_total):
        """Mean of a per-sample loss share over the global batch's self-reference pairs only
        (those whose exemplar shows the target's content, so the target is the right answer)."""
        return tf.reduce_sum(batch["self_ref"] * per_sample) / (self_ref_total + SELF_REF_EPSILON)

    def _discriminate(self, label, fake, real):
        """Fake and real through the discriminator in one batch -> (fake outputs, real outputs)."""
        return discriminate(self.discriminator, label, fake, real, self.full_precision)

    def generator_losses(self, batch, self_ref_total, training=True):
        """(dict of weighted per-replica loss shares, generator output)."""
        w = self.config.losses
        label, image, exemplar = batch["label"], batch["image"], batch["exemplar"]
        out = self.correspondence(label, exemplar, batch["exemplar_label"], image=image, training=training,
                                  step=self.g_optimizer.iterations)
        fake = tf.cast(self.generator(label, out["warps"], training=training), self.full_precision)
        losses = generator_adversarial(*self._discriminate(label, fake, image), w, self._average)
        if w.reconstruction > 0:
            losses["reconstruction"] = w.reconstruction * self._self_ref_mean(
                batch, per_sample_mean(tf.abs(fake - image)), self_ref_total)
        vgg_model = self._loss_networks.vgg
        if vgg_model is not None:
            fake_f = vgg.features(vgg_model, fake)
            real_f = vgg.features(vgg_model, image) if w.vgg > 0 or w.perceptual > 0 else None
            if w.vgg > 0:
                losses["vgg"] = w.vgg * self._average(vgg.feature_matching(fake_f, real_f))
            if w.perceptual > 0:
                losses["perceptual"] = w.perceptual * self._average(vgg.perceptual(fake_f, real_f))
            if w.contextual > 0:
                exemplar_f = vgg.features(vgg_model, exemplar)
                losses["contextual"] = w.contextual * self._average(contextual.contextual_vgg(fake_f, exemplar_f))
        if self.sesim is not None:
            losses["spatial_correlative"] = w.spatial_correlative * self._average(
                self.sesim.loss(self._loss_networks.sesim, batch, fake, self.g_optimizer.iterations))
        return {**losses, **self.correspondence_losses(batch, out, self_ref_total)}, fake

    def correspondence_losses(self, batch, out, self_ref_total):
        """The correspondence network's own losses (warp-self, warp-cycle, alignment, flow) on
        its output `out` for `batch` (called with the ground truth image, in training), as
        weighted shares."""
        w, losses = self.config.losses, {}
        if w.warp_self > 0:
            losses["warp_self"] = w.warp_self * self._self_ref_mean(
                batch, correspondence.warp_self(out["warps"], batch["image"]), self_ref_total)
        if w.warp_cycle > 0:
            losses["warp_cycle"] = w.warp_cycle * self._average(
                correspondence.warp_cycle(out["cycle_warp"], batch["exemplar"]))
        if w.alignment > 0:
            losses["alignment"] = w.alignment * self._average(
                correspondence.alignment(out["features"], out["target_features"]))
        if w.flow > 0 and "trajectories" in out:  # the correspondence's training output carries them
            factors = [level_factor(level) for level in range(self.config.model.corr_levels)]
            losses["flow"] = w.flow * self._average(correspondence.flow_supervision(
                out, batch["flow"], batch["flow_mask"], w.flow_gamma, factors))
        return losses

    def _generator_gradients_eager(self, batch, self_ref_total):
        variables = self.generator_variables()
        with tf.GradientTape() as tape:
            losses, fake = self.generator_losses(batch, self_ref_total)
            total = tf.add_n(list(losses.values()))
            scaled = self.g_optimizer.scale_loss(total)  # identity unless a LossScaleOptimizer
        return tape.gradient(scaled, variables), {**losses, "total": total}, fake

    def _sesim_gradients_eager(self, batch, fake):
        """The LSeSim heads' gradients of their own loss; the generator's term never updates them."""
        with tf.GradientTape() as tape:
            loss = self._average(self.sesim.heads_loss(self._loss_networks.sesim, batch, fake,
                                                       self.g_optimizer.iterations))
        return tape.gradient(loss, self.sesim.trainable_variables), loss

    def discriminator_losses(self, batch, fake):
        return discriminator_losses(self.discriminator, batch["label"], fake, batch["image"], self.config.losses.gan,
                                    self._average, self.full_precision)

    def _discriminator_gradients_eager(self, batch, fake):
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            losses = self.discriminator_losses(batch, fake)
            total = losses["real"] + losses["fake"]
            scaled = self.d_optimizer.scale_loss(total)
        return tape.gradient(scaled, variables), losses

    def training_batch(self, batch):
        """The keys a training step reads, in the full-precision dtype."""
        return {k: tf.cast(v, self.full_precision) for k, v in batch.items() if k in TRAIN_KEYS}

    def train_step(self, batch):
        """One training step on this replica's part of `batch` -> the global batch's losses."""
        batch = self.training_batch(batch)
        context = tf.distribute.get_replica_context()
        self_ref_total = tf.reduce_sum(batch["self_ref"])
        if context is not None:
            self_ref_total = context.all_reduce(tf.distribute.ReduceOp.SUM, self_ref_total)
        # spectral norm's power iterations, one per training forward as PyTorch's: the
        # generator step runs the correspondence, the generator and the discriminator
        # (on the fake), the discriminator step the discriminator again (G's output reused)
        power_iterations(self.correspondence)
        power_iterations(self.generator)
        power_iterations(self.discriminator)
        g_grads, g_losses, fake = self._generator_gradients(batch, self_ref_total)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator_variables()))
        heads = {}
        if self.sesim is not None and self.sesim.learned:
            s_grads, heads["sesim_contrastive"] = self._sesim_gradients(batch, fake)
            self.sesim_optimizer.apply_gradients(zip(s_grads, self.sesim.trainable_variables))
        power_iterations(self.discriminator)
        d_grads, d_losses = self._discriminator_gradients(batch, fake)
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        losses = {**{f"G_{k}": v for k, v in g_losses.items()}, **{f"D_{k}": v for k, v in d_losses.items()},
                  **heads}
        return global_losses(losses)
