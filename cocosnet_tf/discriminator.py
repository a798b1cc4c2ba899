"""Multi-scale patch discriminator (pix2pixHD / the official MultiscaleDiscriminator).

Each scale is an NLayerDiscriminator on concat(semantic map, image): a 4x4 stride-2
conv with bias and leaky ReLU, then spectral-norm convs without bias + instance norm +
leaky ReLU (stride 2, the last stride 1), then a 4x4 conv to one channel. Every
intermediate output is returned for the feature-matching loss; the last is the logit.
The next scale sees the input average-pooled 3x3, stride 2, padding 1 without counting
the padding. (The official class also builds a decoder that its forward never uses; it
is not built here, and the converter ignores its weights.)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.layers.blocks import LEAK, attached, conv, spectral
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.norms import instance_norm

KERNEL = 4
MAX_FILTERS = 512


def pad1(x: tf.Tensor) -> tf.Tensor:
    return tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])


def downsample(x: tf.Tensor) -> tf.Tensor:
    """avg_pool2d(3, stride 2, padding 1, count_include_pad=False)."""
    total = tf.nn.avg_pool2d(pad1(x), 3, 2, "VALID")
    count = tf.nn.avg_pool2d(pad1(tf.ones_like(x[..., :1])), 3, 2, "VALID")
    return total / count


@keras.saving.register_keras_serializable("cocosnet")
class PatchDiscriminator(Composite, keras.layers.Layer):
    def __init__(self, ndf: int = 64, discriminator_layers: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.ndf, self.discriminator_layers = ndf, discriminator_layers
        self.convs, self.norms = [conv(ndf, KERNEL, stride=2, name="model0")], [None]
        nf = ndf
        for n in range(1, discriminator_layers):
            nf = min(nf * 2, MAX_FILTERS)
            stride = 1 if n == discriminator_layers - 1 else 2
            self.convs.append(spectral(conv(nf, KERNEL, stride=stride, use_bias=False), name=f"model{n}"))
            self.norms.append(instance_norm(f"model{n}_norm"))
        self.convs.append(conv(1, KERNEL, name=f"model{discriminator_layers}"))
        self.norms.append(None)
        attached(self, "conv", self.convs)

    def call(self, x):
        features = []
        for i, (layer, norm) in enumerate(zip(self.convs, self.norms)):
            x = layer(pad1(x))
            if norm is not None:
                x = norm(x)
            if i < len(self.convs) - 1:
                x = tf.nn.leaky_relu(x, LEAK)
            features.append(x)
        return features

    def get_config(self):
        return {**super().get_config(), "ndf": self.ndf, "discriminator_layers": self.discriminator_layers}


@keras.saving.register_keras_serializable("cocosnet")
class MultiscaleDiscriminator(Composite, keras.layers.Layer):
    """call(concat(semantic map, image)) -> per scale, the list of intermediate outputs."""

    def __init__(self, ndf: int = 64, discriminator_layers: int = 4, num_discriminators: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.ndf, self.discriminator_layers, self.num_discriminators = ndf, discriminator_layers, num_discriminators
        self.discriminators = attached(self, "scale", [PatchDiscriminator(ndf, discriminator_layers,
                                                                          name=f"discriminator_{i}")
                                                       for i in range(num_discriminators)])

    def call(self, x):
        outputs = []
        for i, discriminator in enumerate(self.discriminators):
            if i:
                x = downsample(x)
            outputs.append(discriminator(x))
        return outputs

    def get_config(self):
        return {**super().get_config(), "ndf": self.ndf, "discriminator_layers": self.discriminator_layers,
                "num_discriminators": self.num_discriminators}
