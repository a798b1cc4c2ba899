"""Contextual loss (Mechrez et al.), as the official ContextualLoss_forward with PONO
centring: features centred by the target's channel mean at each position."""

from __future__ import annotations

import tensorflow as tf

from cocosnet_tf.layers.blocks import average_pool
from cocosnet_tf.layers.norms import l2_normalize_channels

BANDWIDTH = 0.1


def contextual(x: tf.Tensor, y: tf.Tensor, bandwidth: float = BANDWIDTH) -> tf.Tensor:
    """x, y [B, H, W, C] -> [B]: -log(mean_i max_j A_ij), A the normalised affinities of
    cosine distances relative to each i's nearest j. Minimal (0 would need a one-hot A)
    when x and y are the same features; grows as they differ."""
    y = tf.stop_gradient(y)
    mean = tf.reduce_mean(y, axis=-1, keepdims=True)
    x = l2_normalize_channels(x - mean, centre=False)
    y = l2_normalize_channels(y - mean, centre=False)
    b, c = tf.shape(x)[0], tf.shape(x)[-1]
    x = tf.reshape(x, [b, -1, c])
    y = tf.reshape(y, [b, -1, c])
    distance = 1.0 - tf.matmul(x, y, transpose_b=True)  # [B, N, N]
    relative = distance / (tf.reduce_min(distance, axis=-1, keepdims=True) + 1e-3)
    affinity = tf.nn.softmax((1.0 - relative) / bandwidth, axis=-1)
    return -tf.math.log(tf.reduce_mean(tf.reduce_max(affinity, axis=-1), axis=-1))


def contextual_vgg(fake: list[tf.Tensor], exemplar: list[tf.Tensor]) -> tf.Tensor:
    """8 CX(r52) + 4 CX(r42) + 2 CX(avgpool2(r32)): the output against the exemplar."""
    return (8.0 * contextual(fake[4], exemplar[4]) + 4.0 * contextual(fake[3], exemplar[3])
            + 2.0 * contextual(average_pool(fake[2], 2), average_pool(exemplar[2], 2)))
