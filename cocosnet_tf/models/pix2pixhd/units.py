"""The building units pix2pixHD's generator and encoder share: convolution + instance
norm + ReLU in three geometries, its residual block and its tanh image head.

Paddings follow the official PyTorch layers so that shapes and pixel alignment agree:
strided convolutions pad one zero on every side (not TensorFlow's "same", which pads an
even input only at the end), transposed convolutions place output pixel 2i + k - 1.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.discriminator import pad1
from cocosnet_tf.layers.blocks import conv, kernel_init
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.norms import ReflectionPad, instance_norm

MODES = ("reflect", "down", "up")


@keras.saving.register_keras_serializable("pix2pixhd")
class ConvUnit(Composite, keras.layers.Layer):
    """ReLU(IN(convolution(x))). mode "reflect": a stride-1 convolution after reflection
    padding of kernel_size // 2; "down": a stride-2 convolution (half the size); "up": a
    stride-2 transposed convolution (twice the size)."""

    def __init__(self, filters: int, kernel_size: int = 3, mode: str = "down", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"ConvUnit mode must be one of {MODES}, got {mode!r}")
        self.filters, self.kernel_size, self.mode = filters, kernel_size, mode
        if mode == "up":
            # "valid" places output pixel 2i + k; cropping the first row and column gives
            # torch's ConvTranspose2d(stride 2, padding 1, output_padding 1): exactly 2x
            self.conv = keras.layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="valid",
                                                     kernel_initializer=kernel_init(), name="conv")
        else:
            self.conv = conv(filters, kernel_size, stride=2 if mode == "down" else 1, name="conv")
            self.pad = ReflectionPad(kernel_size // 2) if mode == "reflect" else None
        self.norm = instance_norm("norm")

    def call(self, x):
        if self.mode == "up":
            size = 2 * tf.shape(x)[1:3]
            x = self.conv(x)[:, 1:size[0] + 1, 1:size[1] + 1]
        elif self.mode == "down":
            x = self.conv(pad1(x))
        else:
            x = self.conv(self.pad(x))
        return tf.nn.relu(self.norm(x))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size, "mode": self.mode}


@keras.saving.register_keras_serializable("pix2pixhd")
class ResnetBlock(Composite, keras.layers.Layer):
    """x + IN(conv(pad(ReLU(IN(conv(pad(x))))))): ReLU inside, no activation after the sum
    (unlike layers.blocks.ResidualBlock, CoCosNet's shared-PReLU block)."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.unit = ConvUnit(channels, 3, "reflect", name="unit")
        self.pad = ReflectionPad(1)
        self.conv = conv(channels, 3, name="conv")
        self.norm = instance_norm("norm")

    def call(self, x):
        return x + self.norm(self.conv(self.pad(self.unit(x))))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable("pix2pixhd")
class ImageHead(Composite, keras.layers.Layer):
    """tanh(7x7 convolution(reflection pad 3 (x))): features -> image in [-1, 1]."""

    def __init__(self, output_nc: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.output_nc = output_nc
        self.pad = ReflectionPad(3)
        self.conv = conv(output_nc, 7, name="conv")

    def call(self, x):
        return tf.tanh(self.conv(self.pad(x)))

    def get_config(self):
        return {**super().get_config(), "output_nc": self.output_nc}
