"""What every trainable model kind shares: the precision of a config, its optimisers'
learning-rate schedule, the frozen networks of the losses, and whether training spans
several workers."""

from __future__ import annotations

from contextlib import contextmanager

import keras
import tensorflow as tf

from cocosnet_tf.config import Config, TrainConfig


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


def several_workers() -> bool:
    """Whether the current strategy's replicas span several workers."""
    if not tf.distribute.has_strategy():
        return False
    strategy = tf.distribute.get_strategy()
    return strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
