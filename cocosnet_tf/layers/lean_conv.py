"""A stride-1 convolution whose gradient needs no im2col buffer.

TensorFlow's CPU kernels for a convolution's gradients (Conv2DBackpropInput and
Conv2DBackpropFilter) build an im2col buffer of positions x kh * kw * C_in floats: for
a 7x7 convolution of 32 channels at 512 x 512 that is 1.6 GB, for a 3x3 one of the
SPADE blocks' 128 hidden channels 1.2 GB, each a transient of the backward pass that
dwarfs the activations it works on. Here the input's gradient is a forward convolution
of the output's gradient with the flipped kernel (which needs only its output), and the
kernel's gradient is kh * kw matrix products of a shifted input with the output's
gradient, one at a time. Same arithmetic, memory of one shifted input.

It costs graph-building time (a custom gradient and a loop per convolution; used for
every convolution, `tests/test_model.py` took 333 s instead of 224 s), so it is used
only where the buffer it avoids would be large, or where the input's size is unknown.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.layers.scopes import in_forward_scope


# im2col buffers up to this size are left to TensorFlow's gradient kernels
SMALL_BUFFER_BYTES = 64 * 2 ** 20


def applies(kernel_size, strides, dilation_rate, data_format, input_shape, itemsize: int = 4) -> bool:
    """Stride 1, no dilation, channels last and an odd kernel larger than 1x1 (for odd
    kernels "same" pads symmetrically, so the input's gradient is a "same" convolution
    again; 1x1 convolutions need no im2col), on an input whose im2col buffer
    (positions x kh x kw x C_in) would exceed SMALL_BUFFER_BYTES or is of unknown size."""
    if not (tuple(strides) == (1, 1) and tuple(dilation_rate) == (1, 1) and data_format == "channels_last"
            and all(k % 2 for k in kernel_size) and max(kernel_size) > 1):
        return False
    if any(d is None for d in input_shape):
        return True
    positions = input_shape[0] * input_shape[1] * input_shape[2]
    return positions * kernel_size[0] * kernel_size[1] * input_shape[3] * itemsize > SMALL_BUFFER_BYTES


def conv2d(x: tf.Tensor, kernel: tf.Tensor, padding: str) -> tf.Tensor:
    """tf.nn.conv2d(x, kernel, 1, padding) for an odd kernel; padding "SAME" or "VALID"."""
    kh, kw = kernel.shape[0], kernel.shape[1]

    @tf.custom_gradient
    def convolve(x, kernel):
        def gradient(dy):
            flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            if padding == "SAME":
                dx = tf.nn.conv2d(dy, flipped, 1, "SAME")
                padded = tf.pad(x, [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]])
            else:
                dx = tf.nn.conv2d(tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]), flipped, 1,
                                  "VALID")
                padded = x
            return dx, kernel_gradient(padded, dy, kh, kw)

        return tf.nn.conv2d(x, kernel, 1, padding), in_forward_scope(gradient)

    # a tensor, not the variable: custom_gradient would otherwise ask for variables' gradients
    return convolve(x, tf.convert_to_tensor(kernel))


def kernel_gradient(padded: tf.Tensor, dy: tf.Tensor, kh: int, kw: int) -> tf.Tensor:
    """[kh, kw, C_in, C_out]: tap (i, j) is sum over positions of padded[p + (i, j)] dy[p]."""
    shape = tf.shape(dy)
    c_in, c_out = padded.shape[-1], dy.shape[-1]
    flat_dy = tf.reshape(dy, [-1, c_out])

    def tap(index):
        shifted = tf.slice(padded, tf.stack([0, index // kw, index % kw, 0]),
                           tf.stack([shape[0], shape[1], shape[2], c_in]))
        return tf.matmul(tf.reshape(shifted, [-1, c_in]), flat_dy, transpose_a=True)

    # one tap at a time: parallel iterations would hold several shifted copies
    taps = tf.map_fn(tap, tf.range(kh * kw), fn_output_signature=dy.dtype, parallel_iterations=1)
    return tf.reshape(taps, [kh, kw, c_in, c_out])


@keras.saving.register_keras_serializable("cocosnet")
class LeanConv2D(keras.layers.Conv2D):
    """keras Conv2D whose gradient is `conv2d`'s where that applies (same weights,
    same outputs)."""

    def convolution_op(self, inputs, kernel):
        if applies(self.kernel_size, self.strides, self.dilation_rate, self.data_format, tuple(inputs.shape),
                   inputs.dtype.size):
            return conv2d(inputs, kernel, self.padding.upper())
        return super().convolution_op(inputs, kernel)
