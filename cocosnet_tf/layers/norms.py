"""Normalisations and padding as the official PyTorch layers compute them."""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.layers.scopes import in_forward_scope

INSTANCE_EPSILON = 1e-5  # torch.nn.InstanceNorm2d
PONO_EPSILON = 1e-8  # the official PositionalNorm2d


def instance_norm(name: str | None = None) -> keras.layers.Layer:
    """Parameter-free instance normalisation (InstanceNorm2d, affine=False)."""
    return keras.layers.GroupNormalization(groups=-1, center=False, scale=False,
                                           epsilon=INSTANCE_EPSILON, name=name)


def positional_norm(x: tf.Tensor) -> tf.Tensor:
    """PONO: normalise each position over its channels (unbiased variance, as torch.var)."""
    channels = tf.cast(tf.shape(x)[-1], x.dtype)
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_sum(tf.square(x - mean), axis=-1, keepdims=True) / (channels - 1)
    return (x - mean) / tf.sqrt(var + PONO_EPSILON)


def l2_normalize_channels(x: tf.Tensor, centre: bool, epsilon: float = 1e-10) -> tf.Tensor:
    """Optionally centre over channels, then divide by the L2 norm (+ epsilon, as official)."""
    if centre:
        x = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    return divide_by_norm(x, epsilon)


def divide_by_norm(x: tf.Tensor, epsilon: float) -> tf.Tensor:
    """x / (its L2 norm over channels + epsilon), with a gradient computed from the output
    and the norm: the backward pass keeps neither x nor the division's temporaries (each a
    full map: at 512 x 512 the correspondence normalises four of 32 channels)."""

    @tf.custom_gradient
    def normalised(x):
        norm = tf.norm(x, axis=-1, keepdims=True)
        y = x / (norm + epsilon)

        def gradient(g):
            # d/dx of x / (|x| + eps) is g / (|x| + eps) - y <y, g> / |x|. A zero vector
            # (a constant input, such as an empty edge map, after instance normalisation)
            # has no direction; its 1 / eps gain would reach 1e36 a few layers back and
            # overflow, so it passes no gradient
            dot = tf.reduce_sum(y * g, axis=-1, keepdims=True)
            along = tf.where(norm > 0, g / (norm + epsilon), tf.zeros_like(g))
            return along - y * tf.math.divide_no_nan(dot, norm)

        return y, in_forward_scope(gradient)

    return normalised(x)


@keras.saving.register_keras_serializable("cocosnet")
class ReflectionPad(keras.layers.Layer):
    """Reflection padding of the two spatial axes (nn.ReflectionPad2d)."""

    def __init__(self, pad: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        p = self.pad
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}
