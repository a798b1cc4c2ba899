"""Losses of the correspondence network: warp-self, warp-cycle, domain alignment."""

from __future__ import annotations

import tensorflow as tf

from cocosnet_tf.layers.blocks import average_pool
from cocosnet_tf.losses.adversarial import per_sample_mean


def pool_to(image: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Average-pool image to like's size (an integer factor, as the warps' levels;
    static shapes, as in a training step)."""
    return average_pool(image, image.shape[1] // like.shape[1])


def warp_self(warps: list[tf.Tensor], target: tf.Tensor) -> tf.Tensor:
    """Per sample: sum over levels of L1(warp, target pooled to the warp's size).
    The caller weights it by self_ref (only pairs whose exemplar shows the target)."""
    return tf.add_n([per_sample_mean(tf.abs(w - pool_to(target, w))) for w in warps])


def warp_cycle(cycle_warp: tf.Tensor, exemplar: tf.Tensor) -> tf.Tensor:
    """L1 between the coarsest warp warped back and the exemplar pooled to its size."""
    return per_sample_mean(tf.abs(cycle_warp - pool_to(exemplar, cycle_warp)))


def alignment(features: list[tf.Tensor], target_features: list[tf.Tensor]) -> tf.Tensor:
    """L1 between the input branch's features and the exemplar branch's features of the
    ground truth, summed over levels (official weights 1 per level)."""
    return tf.add_n([per_sample_mean(tf.abs(f - t)) for f, t in zip(features, target_features)])
