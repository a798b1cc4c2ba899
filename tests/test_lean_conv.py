"""LeanConv2D: the same outputs and gradients as TensorFlow's convolution, computed
without the im2col buffer of TensorFlow's CPU gradient kernels."""

import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.layers.blocks import conv
from cocosnet_tf.layers import lean_conv
from cocosnet_tf.layers.lean_conv import LeanConv2D, applies, conv2d

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("kernel,padding", [((3, 3), "SAME"), ((7, 7), "SAME"), ((1, 5), "SAME"),
                                            ((5, 1), "VALID"), ((3, 3), "VALID")])
def test_gradients_equal_tensorflows(kernel, padding):
    x = tf.constant(RNG.normal(size=(2, 9, 11, 4)))
    w = tf.constant(RNG.normal(size=kernel + (4, 6)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        ours, theirs = conv2d(x, w, padding), tf.nn.conv2d(x, w, 1, padding)
        # a loss whose output gradient varies over positions and channels
        weights = tf.constant(RNG.normal(size=ours.shape))
        loss_ours, loss_theirs = tf.reduce_sum(ours * weights), tf.reduce_sum(theirs * weights)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12)
    for got, expected in zip(tape.gradient(loss_ours, [x, w]), tape.gradient(loss_theirs, [x, w])):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-10, atol=1e-10)


def test_the_layer_uses_it_where_it_applies_and_keeps_keras_weights(monkeypatch):
    monkeypatch.setattr(lean_conv, "SMALL_BUFFER_BYTES", 0)  # this small input takes the lean path
    calls = []
    monkeypatch.setattr(lean_conv, "conv2d", lambda *args: calls.append(args) or conv2d(*args))
    layer = conv(6, 3, padding="same")
    assert isinstance(layer, LeanConv2D)
    x = tf.constant(RNG.normal(size=(1, 8, 8, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        y = layer(x)
    reference = tf.nn.conv2d(x, layer.kernel, 1, "SAME") + layer.bias
    np.testing.assert_allclose(y.numpy(), reference.numpy(), atol=1e-6)
    assert [v.name for v in layer.weights] == ["kernel", "bias"]
    assert all(g is not None for g in tape.gradient(y, layer.trainable_variables))
    assert len(calls) == 1


def test_small_inputs_keep_tensorflows_gradient_and_large_or_unknown_ones_take_the_lean_one():
    # 512 x 512 x 49 x 32 floats is 1.6 GB of im2col; 32 x 32 x 9 x 8 floats is 295 KB
    assert applies((7, 7), (1, 1), (1, 1), "channels_last", (1, 512, 512, 32))
    assert not applies((3, 3), (1, 1), (1, 1), "channels_last", (1, 32, 32, 8))
    assert applies((3, 3), (1, 1), (1, 1), "channels_last", (None, None, None, 8))


def test_strided_even_and_pointwise_convolutions_keep_tensorflows_gradient():
    large = (1, 512, 512, 64)
    assert applies((3, 3), (1, 1), (1, 1), "channels_last", large)
    assert not applies((4, 4), (2, 2), (1, 1), "channels_last", large)  # the discriminator's
    assert not applies((3, 3), (2, 2), (1, 1), "channels_last", large)  # the encoder's stride 2
    assert not applies((4, 4), (1, 1), (1, 1), "channels_last", large)  # even: "same" pads unevenly
    assert not applies((1, 1), (1, 1), (1, 1), "channels_last", large)  # no im2col to save
    layer = conv(5, 4, stride=2, padding="same")
    x = tf.constant(RNG.normal(size=(1, 8, 8, 3)).astype(np.float32))
    np.testing.assert_allclose(layer(x).numpy(), (tf.nn.conv2d(x, layer.kernel, 2, "SAME") + layer.bias).numpy(),
                               atol=1e-6)
