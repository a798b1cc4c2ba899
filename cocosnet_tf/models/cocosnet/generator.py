"""The SPADE translation network (official SPADEGenerator, resolution-general).

The conditioning map is the input semantic map concatenated *after* the warps of every
correspondence level, each nearest-upsampled to the image size (the official order:
warps coarse to fine, then the semantic map). The trunk starts from that map resized
to S/32, then fc, head, two middle blocks and four up blocks, each SPADE-modulated by
it (PONO inside SPADE), and ends in leaky ReLU, a 3x3 conv and tanh.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.config import SIZE_MULTIPLE as DOWNSAMPLING  # five 2x upsamplings to the image
from cocosnet_tf.layers.blocks import LEAK, SPADE_HIDDEN, SPADEResnetBlock, conv, resize_nearest, upsample2
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.layers.remat import rematerialized
from cocosnet_tf.runtime import current_runtime


@keras.saving.register_keras_serializable("cocosnet")
class Generator(Composite, keras.layers.Layer):
    """Its recomputation is the runtime setting it was made with (cocosnet_tf.runtime)."""

    def __init__(self, semantic_nc: int, corr_levels: int = 4, ngf: int = 64, spade_hidden: int = SPADE_HIDDEN,
                 **kwargs):
        super().__init__(**kwargs)
        self.semantic_nc, self.corr_levels, self.ngf, self.spade_hidden = semantic_nc, corr_levels, ngf, spade_hidden
        self.runtime = current_runtime()
        nf = ngf
        self.fc = conv(8 * nf, 3, padding="same", name="fc")
        self.head_0 = SPADEResnetBlock(8 * nf, 8 * nf, spade_hidden, name="head_0")
        self.middle_0 = SPADEResnetBlock(8 * nf, 8 * nf, spade_hidden, name="G_middle_0")
        self.middle_1 = SPADEResnetBlock(8 * nf, 8 * nf, spade_hidden, name="G_middle_1")
        self.up_0 = SPADEResnetBlock(8 * nf, 8 * nf, spade_hidden, name="up_0")
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, spade_hidden, name="up_1")
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, spade_hidden, name="up_2")
        self.up_3 = SPADEResnetBlock(2 * nf, nf, spade_hidden, name="up_3")
        self.conv_img = conv(3, 3, padding="same", name="conv_img")

    def conditioning(self, label: tf.Tensor, warps: list[tf.Tensor]) -> tf.Tensor:
        if len(warps) != self.corr_levels:
            raise ValueError(f"the generator expects {self.corr_levels} warps (one per level), got {len(warps)}")
        size = tf.shape(label)[1:3]
        return tf.concat([resize_nearest(w, size) for w in warps] + [label], axis=-1)

    def call(self, label, warps, training=False):
        """label [B, H, W, semantic_nc], warps coarse to fine -> image [B, H, W, 3] in [-1, 1]."""
        h, w = label.shape[1], label.shape[2]
        if (h is not None and h % DOWNSAMPLING) or (w is not None and w % DOWNSAMPLING):
            raise ValueError(f"image size {h}x{w}: the generator needs multiples of {DOWNSAMPLING}")
        seg = self.conditioning(label, warps)
        remat = lambda block: rematerialized(block, training and self.runtime.recompute)  # noqa: E731
        x = self.fc(resize_nearest(seg, tf.shape(label)[1:3] // DOWNSAMPLING))
        x = upsample2(remat(self.head_0)(x, seg))
        x = remat(self.middle_1)(remat(self.middle_0)(x, seg), seg)
        x = upsample2(x)
        for block in (self.up_0, self.up_1, self.up_2):
            x = upsample2(remat(block)(x, seg))
        x = remat(self.up_3)(x, seg)
        return tf.tanh(self.conv_img(tf.nn.leaky_relu(x, LEAK)))

    def get_config(self):
        return {**super().get_config(), "semantic_nc": self.semantic_nc, "corr_levels": self.corr_levels,
                "ngf": self.ngf, "spade_hidden": self.spade_hidden}
