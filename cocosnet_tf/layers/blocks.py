"""Residual and SPADE blocks, layer for layer as the official CoCosNet v2 builds them."""

from __future__ import annotations

from contextlib import contextmanager

import keras
import tensorflow as tf

from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.lean_conv import LeanConv2D
from cocosnet_tf.layers.norms import ReflectionPad, instance_norm, positional_norm
from cocosnet_tf.layers.spectral import SpectralConv

SPADE_HIDDEN = 128  # the official SPADE's hidden width (model.spade_hidden)
LEAK = 0.2


OFFICIAL_INIT_GAIN = 0.02
_init_gain = [OFFICIAL_INIT_GAIN]


@contextmanager
def init_gain(gain: float):
    """Layers made inside the block start from xavier_normal(gain) (model.init_gain)."""
    _init_gain.append(gain)
    try:
        yield
    finally:
        _init_gain.pop()


def kernel_init() -> keras.initializers.Initializer:
    """xavier_normal(gain), gain 0.02 as the official init_weights unless init_gain says
    otherwise. A new one per layer: an initializer made at import time would draw its
    seed before keras.utils.set_random_seed."""
    return keras.initializers.VarianceScaling(scale=_init_gain[-1] ** 2, mode="fan_avg",
                                              distribution="untruncated_normal")


def conv(filters: int, kernel, stride: int = 1, padding: str = "valid", use_bias: bool = True,
         name: str | None = None) -> keras.layers.Conv2D:
    return LeanConv2D(filters, kernel, strides=stride, padding=padding, use_bias=use_bias,
                               kernel_initializer=kernel_init(), bias_initializer="zeros", name=name)


def spectral(layer: keras.layers.Conv2D, name: str | None = None) -> SpectralConv:
    return SpectralConv(layer, name=name)


@keras.saving.register_keras_serializable("cocosnet")
class ResidualBlock(Composite, keras.layers.Layer):
    """x -> PReLU(x + IN(conv(pad(PReLU(IN(conv(pad(x)))))))), one PReLU slope shared."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.pad = ReflectionPad(1)
        self.conv_0 = conv(channels, 3, name="conv_0")
        self.norm_0 = instance_norm("norm_0")
        self.conv_1 = conv(channels, 3, name="conv_1")
        self.norm_1 = instance_norm("norm_1")
        # nn.PReLU(): a single learnable slope (0.25), used twice
        self.prelu = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                                        shared_axes=[1, 2, 3], name="prelu")

    def call(self, x):
        y = self.prelu(self.norm_0(self.conv_0(self.pad(x))))
        y = self.norm_1(self.conv_1(self.pad(y)))
        return self.prelu(x + y)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def attached(owner: keras.layers.Layer, prefix: str, layers: list) -> list:
    """`layers`, each also held as the attribute `prefix_i` of `owner`.

    tf.train.Checkpoint does not look into Keras 3's tracked lists: layers held only in
    a list are missing from checkpoints (and silently random after a restore).
    """
    for i, layer in enumerate(layers):
        if layer is not None:
            setattr(owner, f"{prefix}_{i}", layer)
    return layers


def average_pool(image: tf.Tensor, factor: int) -> tf.Tensor:
    """Means over factor x factor blocks (a correspondence level's exemplar and targets)."""
    return image if factor == 1 else tf.nn.avg_pool2d(image, factor, factor, "VALID")


def upsample2(x: tf.Tensor) -> tf.Tensor:
    """nn.Upsample(scale_factor=2) / F.interpolate(scale_factor=2): nearest neighbour."""
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


def resize_nearest(x: tf.Tensor, size) -> tf.Tensor:
    """Nearest-neighbour resize of x to size (height, width) (F.interpolate 'nearest')."""
    src = tf.shape(x)[1:3]

    def source_index(axis):
        # torch's nearest picks floor(dst * src / dst_size); TF's half-pixel variant differs
        dst = tf.cast(size[axis], tf.float32)
        return tf.cast(tf.floor(tf.cast(tf.range(size[axis]), tf.float32) * tf.cast(src[axis], tf.float32) / dst),
                       tf.int32)

    return tf.gather(tf.gather(x, source_index(0), axis=1), source_index(1), axis=2)


@keras.saving.register_keras_serializable("cocosnet")
class SPADE(Composite, keras.layers.Layer):
    """PONO-normalised x, modulated by (1 + gamma) and beta predicted from the semantic map."""

    def __init__(self, channels: int, hidden: int = SPADE_HIDDEN, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.hidden = channels, hidden
        self.pad = ReflectionPad(1)
        self.mlp_shared = conv(hidden, 3, name="mlp_shared")
        self.mlp_gamma = conv(channels, 3, name="mlp_gamma")
        self.mlp_beta = conv(channels, 3, name="mlp_beta")

    def call(self, x, segmap):
        """segmap: already at x's size (its block resizes it once for all its SPADEs)."""
        normalized = positional_norm(x)
        actv = tf.nn.relu(self.mlp_shared(self.pad(segmap)))
        gamma = self.mlp_gamma(self.pad(actv))
        beta = self.mlp_beta(self.pad(actv))
        return normalized * (1 + gamma) + beta

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden": self.hidden}


@keras.saving.register_keras_serializable("cocosnet")
class SPADEResnetBlock(Composite, keras.layers.Layer):
    """The official SPADE residual block: spectral-norm convs, reflection padding,
    a learned 1x1 shortcut when the channel count changes."""

    # rows of the semantic map an output row depends on, each way: SPADE's two 3x3 convs
    # 2, then conv_0 and conv_1 one each
    REACH = 4

    def __init__(self, fin: int, fout: int, hidden: int = SPADE_HIDDEN, **kwargs):
        super().__init__(**kwargs)
        self.fin, self.fout, self.hidden = fin, fout, hidden
        self.learned_shortcut = fin != fout
        middle = min(fin, fout)
        self.pad = ReflectionPad(1)
        self.conv_0 = spectral(conv(middle, 3), name="conv_0")
        self.conv_1 = spectral(conv(fout, 3), name="conv_1")
        self.norm_0 = SPADE(fin, hidden, name="norm_0")
        self.norm_1 = SPADE(middle, hidden, name="norm_1")
        if self.learned_shortcut:
            self.conv_s = spectral(conv(fout, 1, use_bias=False), name="conv_s")
            self.norm_s = SPADE(fin, hidden, name="norm_s")

    def call(self, x, segmap):
        segmap = resize_nearest(segmap, tf.shape(x)[1:3])
        shortcut = self.conv_s(self.norm_s(x, segmap)) if self.learned_shortcut else x
        dx = self.conv_0(self.pad(tf.nn.leaky_relu(self.norm_0(x, segmap), LEAK)))
        dx = self.conv_1(self.pad(tf.nn.leaky_relu(self.norm_1(dx, segmap), LEAK)))
        return shortcut + dx

    def get_config(self):
        return {**super().get_config(), "fin": self.fin, "fout": self.fout, "hidden": self.hidden}
