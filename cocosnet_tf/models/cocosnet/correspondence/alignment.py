"""Domain alignment: the U-Net that maps an input (semantic map, or exemplar photo plus
its semantic map) to features at S/8, S/4, S/2 and S (official AdaptiveFeatureGenerator)."""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.layers.blocks import (LEAK, SPADE_HIDDEN, ResidualBlock, SPADEResnetBlock, conv, resize_nearest,
                                      spectral)
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.norms import instance_norm
from cocosnet_tf.layers.remat import banded, rematerialized
from cocosnet_tf.runtime import current_runtime


def upsample_bilinear_aligned(x: tf.Tensor) -> tf.Tensor:
    """2x bilinear upsampling with aligned corners (nn.Upsample(align_corners=True)),
    computed in x's dtype (tf.image's resize computes in float32 whatever its input)."""
    for axis in (1, 2):
        size = tf.shape(x)[axis]
        # output i samples input position i * (n - 1) / (2n - 1)
        source = tf.cast(tf.range(2 * size), x.dtype) * tf.cast(size - 1, x.dtype) / tf.cast(
            tf.maximum(2 * size - 1, 1), x.dtype)
        low = tf.minimum(tf.cast(tf.floor(source), tf.int32), size - 1)
        high = tf.minimum(low + 1, size - 1)
        shape = [1, -1, 1, 1] if axis == 1 else [1, 1, -1, 1]
        fraction = tf.reshape(source - tf.cast(low, x.dtype), shape)
        x = tf.gather(x, low, axis=axis) * (1 - fraction) + tf.gather(x, high, axis=axis) * fraction
    return x


def activated(block):
    """block(leaky_relu(x), *rest): the U-Net's activation between stages."""
    return lambda x, *rest: block(tf.nn.leaky_relu(x, LEAK), *rest)


def upsampled_sum(previous, skip):
    """A decoder stage's input: the previous stage upsampled, plus the encoder's skip."""
    return upsample_bilinear_aligned(previous) + skip


@keras.saving.register_keras_serializable("cocosnet")
class EncoderStage(Composite, keras.layers.Layer):
    """Spectral-norm conv without bias + instance norm, optionally a residual block."""

    def __init__(self, filters: int, stride: int, residual: bool, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.stride, self.residual = filters, stride, residual
        # official padding=1 zero padding; for stride 2 on even sizes that is not TF's "same"
        self.conv = spectral(conv(filters, 3, stride=stride, use_bias=False), name="conv")
        self.norm = instance_norm("norm")
        self.block = ResidualBlock(filters, name="res") if residual else None

    def call(self, x):
        x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        x = self.norm(self.conv(x))
        return self.block(x) if self.block is not None else x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride, "residual": self.residual}


@keras.saving.register_keras_serializable("cocosnet")
class AlignmentUNet(Composite, keras.layers.Layer):
    """Returns the first `corr_levels` of [x6 (S/8, 4nef), x7 (S/4, 4nef), x8 (S/2, 2nef),
    x9 (S, nef)]; decoder blocks of unused levels are not built."""

    def __init__(self, nef: int = 32, corr_levels: int = 4, spade_hidden: int = SPADE_HIDDEN, **kwargs):
        super().__init__(**kwargs)
        self.nef, self.corr_levels, self.spade_hidden = nef, corr_levels, spade_hidden
        self.runtime = current_runtime()
        self.layer1 = EncoderStage(nef, 1, False, name="layer1")
        self.layer2 = EncoderStage(nef * 2, 1, True, name="layer2")
        self.layer3 = EncoderStage(nef * 4, 2, True, name="layer3")
        self.layer4 = EncoderStage(nef * 4, 2, True, name="layer4")
        self.layer5 = EncoderStage(nef * 4, 2, True, name="layer5")
        self.head_0 = SPADEResnetBlock(nef * 4, nef * 4, spade_hidden, name="head_0")
        self.middle_0 = SPADEResnetBlock(nef * 4, nef * 4, spade_hidden, name="G_middle_0")
        deep = corr_levels >= 3
        self.middle_1 = SPADEResnetBlock(nef * 4, nef * 2, spade_hidden, name="G_middle_1") if deep else None
        self.middle_2 = SPADEResnetBlock(nef * 2, nef, spade_hidden, name="G_middle_2") if corr_levels >= 4 else None

    def call(self, x, training=False):
        seg = x  # the official code conditions SPADE on the input itself
        recompute = training and self.runtime.recompute
        remat = lambda block: rematerialized(block, recompute)  # noqa: E731
        # each checkpointed block starts from what the previous one returned, so that the
        # activations between them (leaky ReLUs, the upsampling's gathers) are recomputed
        # too instead of kept for the backward pass; the decoder's SPADE blocks, local, in
        # bands of rows
        x1 = remat(self.layer1)(x)
        x2 = remat(activated(self.layer2))(x1)
        x3 = remat(activated(self.layer3))(x2)
        x4 = remat(activated(self.layer4))(x3)
        x5 = remat(activated(self.layer5))(x4)
        features = [remat(self.head_0)(x5, seg)]
        for block, skip in ((self.middle_0, x4), (self.middle_1, x3), (self.middle_2, x2))[: self.corr_levels - 1]:
            x = remat(upsampled_sum)(features[-1], skip)
            band = banded(block, recompute, SPADEResnetBlock.REACH, self.runtime.recompute_band)
            features.append(band(x, resize_nearest(seg, tf.shape(x)[1:3])))
        return features

    def get_config(self):
        return {**super().get_config(), "nef": self.nef, "corr_levels": self.corr_levels,
                "spade_hidden": self.spade_hidden}
