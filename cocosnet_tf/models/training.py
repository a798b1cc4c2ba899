"""What every trainable model kind shares: the precision of a config, its default
optimisers and their learning-rate schedule, the frozen networks of the losses, one pass
of the fake and the real image through the discriminator and the adversarial losses on
it, and the step's figures for the global batch under tf.distribute."""

from __future__ import annotations

from contextlib import contextmanager

import keras
import tensorflow as tf

from cocosnet_tf.config import Config, LossConfig, TrainConfig
from cocosnet_tf.losses import adversarial

GENERATOR_ADAM_EPSILON = 1e-3  # the official optimizer_G; the discriminator keeps Adam's default


def uses_vgg(config: Config) -> bool:
    return any(getattr(config.losses, name) > 0 for name in ("vgg", "perceptual", "contextual"))


@keras.saving.register_keras_serializable("cocosnet")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` until step steps - decay_steps, then linearly down to 0 at `steps`."""

    def __init__(self, rate: float, steps: int, decay_steps: int):
        self.rate, self.steps, self.decay_steps = rate, steps, decay_steps

    def __call__(self, step):
        left = tf.cast(self.steps, tf.float32) - tf.cast(step, tf.float32)
        return self.rate * tf.clip_by_value(left / self.decay_steps, 0.0, 1.0)

    def get_config(self):
        return {"rate": self.rate, "steps": self.steps, "decay_steps": self.decay_steps}


def learning_rate(rate: float, train: TrainConfig):
    """A constant `rate`, or its LinearDecay when train.decay_steps is set."""
    return LinearDecay(rate, train.steps, min(train.decay_steps, train.steps)) if train.decay_steps else rate


def default_optimisers(train: TrainConfig, g_optimizer=None, d_optimizer=None) -> tuple:
    """(generator side, discriminator) optimisers: the given ones, or Adam with train's
    betas at lr/2 and epsilon 1e-3 for the generator side, at 2 lr for the discriminator
    (the official two time-scale rule; train.decay_steps makes both decay). Under
    train.mixed_precision mixed_float16 each is wrapped in a LossScaleOptimizer, unless
    it is one."""
    g_optimizer = g_optimizer or keras.optimizers.Adam(
        learning_rate(train.lr / 2, train), beta_1=train.beta1, beta_2=train.beta2, epsilon=GENERATOR_ADAM_EPSILON,
        name="g_adam")
    d_optimizer = d_optimizer or keras.optimizers.Adam(
        learning_rate(train.lr * 2, train), beta_1=train.beta1, beta_2=train.beta2, name="d_adam")
    if train.mixed_precision != "mixed_float16":
        return g_optimizer, d_optimizer
    return tuple(o if isinstance(o, keras.optimizers.LossScaleOptimizer)
                 else keras.optimizers.LossScaleOptimizer(o, name=f"{side}_scaled")
                 for side, o in (("g", g_optimizer), ("d", d_optimizer)))


class LossNetworks:
    """Frozen networks of the losses, kept out of Keras tracking: they are not part of
    the model, its checkpoints or its exports."""

    vgg: keras.Model | None = None
    sesim: keras.Model | None = None  # VGG16 to relu3_1 and relu4_1, for losses.spatial_correlative


def full_precision(config: Config) -> tf.DType:
    """The dtype of the correspondence, the losses and the variables: float64 when
    train.mixed_precision is float64 (numerical checks), float32 otherwise."""
    return tf.float64 if config.train.mixed_precision == "float64" else tf.float32


@contextmanager
def global_policy(name: str):
    """The global dtype policy is `name` inside, and restored after."""
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(policy)


def discriminate(discriminator, label, fake, real, dtype: tf.DType):
    """Fake and real (each beside the semantic map) through the discriminator in one batch
    -> (fake outputs, real outputs), per scale, cast to `dtype` for the losses (under a
    mixed policy the discriminator computes in float16)."""
    both = tf.concat([tf.concat([label, fake], -1), tf.concat([label, real], -1)], 0)
    outputs = [[tf.cast(f, dtype) for f in scale] for scale in discriminator(both)]
    n = tf.shape(label)[0]
    return [[f[:n] for f in scale] for scale in outputs], [[f[n:] for f in scale] for scale in outputs]


def generator_adversarial(fake_d, real_d, weights: LossConfig, average) -> dict:
    """The generator's weighted hinge term and, with losses.gan_feat, the discriminator
    feature matching, from discriminate's outputs; `average` makes per-sample losses
    this replica's shares."""
    losses = {"gan": weights.gan * average(adversarial.hinge_generator([s[-1] for s in fake_d]))}
    if weights.gan_feat > 0:
        losses["gan_feat"] = weights.gan_feat * average(adversarial.feature_matching(fake_d, real_d))
    return losses


def discriminator_losses(discriminator, label, fake, real, weight: float, average, dtype: tf.DType) -> dict:
    """The discriminator's weighted hinge terms {"real", "fake"} (the fake held fixed)."""
    fake_d, real_d = discriminate(discriminator, label, tf.stop_gradient(fake), real, dtype)
    real_term, fake_term = adversarial.hinge_discriminator([s[-1] for s in real_d], [s[-1] for s in fake_d])
    return {"real": weight * average(real_term), "fake": weight * average(fake_term)}


def global_losses(losses: dict) -> dict:
    """This replica's loss shares (tf.nn.compute_average_loss over the global batch) ->
    the global batch's losses, the same on every replica, so that fit's mean over the
    replicas keeps them."""
    context = tf.distribute.get_replica_context()
    if context is not None:
        losses = context.all_reduce(tf.distribute.ReduceOp.SUM, losses)
    if several_workers():
        # across workers fit reduces each output with a mean over its axis 0, which a
        # scalar does not have; the mean of this one-element axis is the scalar again
        losses = {k: v[None] for k, v in losses.items()}
    return losses


def several_workers() -> bool:
    """Whether the current strategy's replicas span several workers."""
    if not tf.distribute.has_strategy():
        return False
    strategy = tf.distribute.get_strategy()
    return strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
