"""The RAFT-style update block that refines PatchMatch offsets (official convgru.py).

Channel layout follows the official code so that its weights convert: the "flow" is
the K row offsets followed by the K column offsets; the flow head predicts deltas in
the same order.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.layers.blocks import conv, instance_norm
from cocosnet_tf.layers.composite import Composite

MOTION_CHANNELS = 64
# rows of the flow an output row of the update block depends on, each way: convf1 (7x7)
# 3, convf2 1, conv 1, the GRU's 5x1 step 4 (its reset gate, then the candidate's conv of
# r * h), the flow head's two 3x3 convs 2
UPDATE_REACH = 11


@keras.saving.register_keras_serializable("cocosnet")
class SepConvGRU(Composite, keras.layers.Layer):
    """A horizontal (1x5) then a vertical (5x1) ConvGRU step."""

    def __init__(self, hidden: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        for axis, kernel in (("1", (1, 5)), ("2", (5, 1))):
            for gate in "zrq":
                setattr(self, f"conv{gate}{axis}", conv(hidden, kernel, padding="same", name=f"conv{gate}{axis}"))

    def _step(self, h, x, convz, convr, convq):
        hx = tf.concat([h, x], axis=-1)
        z = tf.sigmoid(convz(hx))
        r = tf.sigmoid(convr(hx))
        q = tf.tanh(convq(tf.concat([r * h, x], axis=-1)))
        return (1 - z) * h + z * q

    def call(self, h, x):
        h = self._step(h, x, self.convz1, self.convr1, self.convq1)
        return self._step(h, x, self.convz2, self.convr2, self.convq2)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


@keras.saving.register_keras_serializable("cocosnet")
class UpdateBlock(Composite, keras.layers.Layer):
    """Motion encoder over (scores, offsets) -> SepConvGRU -> flow head (offset deltas)."""

    def __init__(self, candidates: int = 16, hidden: int = 32, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= candidates < MOTION_CHANNELS // 2:
            raise ValueError(f"the update block takes 1..{MOTION_CHANNELS // 2 - 1} candidates, got {candidates}")
        self.candidates, self.hidden = candidates, hidden
        self.convc1 = conv(64, 1, name="convc1")
        self.convc2 = conv(64, 3, padding="same", name="convc2")
        self.convf1 = conv(64, 7, padding="same", name="convf1")
        self.convf2 = conv(64, 3, padding="same", name="convf2")
        self.conv = conv(MOTION_CHANNELS - 2 * candidates, 3, padding="same", name="conv")
        self.gru = SepConvGRU(hidden, name="gru")
        self.head_1 = conv(64, 3, padding="same", name="flow_head_conv1")
        self.head_2 = conv(2 * candidates, 3, padding="same", name="flow_head_conv2")

    def call(self, hidden, scores, flow):
        """scores [B,H,W,K], flow [B,H,W,2K] -> (hidden, delta [B,H,W,2K])."""
        cor = tf.nn.relu(self.convc2(tf.nn.relu(self.convc1(scores))))
        flo = tf.nn.relu(self.convf2(tf.nn.relu(self.convf1(flow))))
        motion = tf.nn.relu(self.conv(tf.concat([cor, flo], axis=-1)))
        hidden = self.gru(hidden, tf.concat([motion, flow], axis=-1))
        return hidden, self.head_2(tf.nn.relu(self.head_1(hidden)))

    def get_config(self):
        return {**super().get_config(), "candidates": self.candidates, "hidden": self.hidden}


@keras.saving.register_keras_serializable("cocosnet")
class HiddenInit(Composite, keras.layers.Layer):
    """The GRU's initial hidden state from both feature maps: (conv3x3, IN, ReLU) x 2."""

    def __init__(self, hidden: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.conv_0 = conv(hidden, 3, padding="same", name="conv_0")
        self.conv_1 = conv(hidden, 3, padding="same", name="conv_1")
        self.norm = instance_norm("norm")

    def call(self, features, exemplar_features):
        x = tf.concat([features, exemplar_features], axis=-1)
        x = tf.nn.relu(self.norm(self.conv_0(x)))
        return tf.nn.relu(self.norm(self.conv_1(x)))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}
