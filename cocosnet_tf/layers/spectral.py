"""Spectral normalisation parametrised as PyTorch's `torch.nn.utils.spectral_norm`.

The convolution keeps its own kernel (PyTorch's `weight_orig`) and applies
kernel / sigma with sigma = u^T W v, from the vectors u and v (`weight_u`, `weight_v`);
the training step updates them by one power iteration before each forward
(`power_iterations`), outside the gradient functions.

Why not `keras.layers.SpectralNormalization`: it writes kernel / sigma back into the
kernel variable at every training call, so the optimiser updates the normalised
kernel, not the original one as the official code does; that replica-local write is
also not a well-defined update of a mirrored variable under tf.distribute; and the
official checkpoints store weight_orig, u and v, which map one to one onto this layer.
"""

from __future__ import annotations

import keras
import tensorflow as tf

EPSILON = 1e-12  # torch.nn.functional.normalize's eps


def _at_least_float32(dtype) -> tf.DType:
    """sigma and the power iteration run in float64 for float64, else in float32
    (under a mixed policy too: float16 has too little range for sigma)."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


def _normalize(x: tf.Tensor) -> tf.Tensor:
    return x / tf.maximum(tf.norm(x), EPSILON)


def power_iterations(layer: keras.layers.Layer) -> None:
    """Update u and v of every SpectralConv inside `layer`."""
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if isinstance(sub, SpectralConv):
            sub.power_iteration()


@keras.saving.register_keras_serializable("cocosnet")
class SpectralConv(keras.layers.Layer):
    """Wraps a Conv2D: y = conv(x, kernel / sigma) + bias."""

    def __init__(self, layer: keras.layers.Conv2D, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape):
        self.layer.build(input_shape)
        out = self.layer.filters
        fan_in = self.layer.kernel.shape[0] * self.layer.kernel.shape[1] * self.layer.kernel.shape[2]
        # u and v are recomputed identically on every replica from the same weights
        sync = dict(trainable=False, aggregation="only_first_replica")
        self.u = self.add_weight(name="u", shape=(out,), initializer=keras.initializers.RandomNormal(), **sync)
        self.v = self.add_weight(name="v", shape=(fan_in,), initializer=keras.initializers.RandomNormal(), **sync)
        self.u.assign(_normalize(self.u))
        self.v.assign(_normalize(self.v))

    def weight_matrix(self) -> tf.Tensor:
        """The kernel as PyTorch's [out, in * kh * kw] matrix (its flattening order)."""
        kernel = tf.transpose(self.layer.kernel, [3, 2, 0, 1])
        return tf.reshape(kernel, [self.layer.filters, -1])

    def power_iteration(self) -> None:
        """One power-iteration update of u and v (PyTorch's, run before each training
        forward). It is a step of its own, called by the training step outside the
        gradient functions: under tf.distribute an assign inside a nested (possibly
        XLA-compiled) tf.function is a cross-replica sync that is not allowed there."""
        dtype = _at_least_float32(self.u.dtype)
        matrix = tf.cast(self.weight_matrix(), dtype)
        v = _normalize(tf.linalg.matvec(matrix, tf.cast(self.u, dtype), transpose_a=True))
        self.v.assign(v)
        self.u.assign(_normalize(tf.linalg.matvec(matrix, v)))

    def call(self, x):
        # sigma in float32 at least, whatever the dtype policy (autocast reads variables
        # in the compute dtype); u and v are constants here, as PyTorch's
        dtype = _at_least_float32(x.dtype)
        matrix = tf.cast(self.weight_matrix(), dtype)
        u, v = tf.cast(self.u, dtype), tf.cast(self.v, dtype)
        sigma = tf.tensordot(u, tf.linalg.matvec(matrix, v), 1)
        kernel = tf.cast(self.layer.kernel, x.dtype) / tf.cast(sigma, x.dtype)
        y = self.layer.convolution_op(x, kernel)
        return y + tf.cast(self.layer.bias, y.dtype) if self.layer.use_bias else y

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)
