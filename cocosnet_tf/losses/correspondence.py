"""Losses of the correspondence network: warp-self, warp-cycle, domain alignment, and
the flow supervision (beyond the official code, for pairs whose true flow is known)."""

from __future__ import annotations

import tensorflow as tf

from cocosnet_tf.layers.blocks import average_pool
from cocosnet_tf.losses.adversarial import per_sample_mean

# a level pixel's flow counts only when every pixel of its block lies within this many
# level pixels of the block's mean (the evaluation's rule, cocosnet_tf.metrics)
COHERENT_LEVEL_PIXELS = 0.5


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


def flow_at_level(flow: tf.Tensor, flow_mask: tf.Tensor, factor: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Full-size flow [B, H, W, 2] (x, y) and its mask [B, H, W, 1] -> the flow between
    the pixels of a level `factor` times smaller [B, h, w, 2] and its mask [B, h, w]: the
    block's mean position in level pixels, where the whole block is known and coherent
    (metrics.flow_at_level computes the same on NumPy arrays)."""
    mean = average_pool(flow, factor)
    spread = tf.abs(flow - tf.repeat(tf.repeat(mean, factor, axis=1), factor, axis=2))
    spread = tf.nn.max_pool2d(tf.reduce_max(spread, axis=-1, keepdims=True), factor, factor, "VALID") / factor
    known = -tf.nn.max_pool2d(-flow_mask, factor, factor, "VALID")  # all of the block
    mask = tf.cast((known > 0.5) & (spread <= COHERENT_LEVEL_PIXELS), flow.dtype)[..., 0]
    return (mean - (factor - 1) / 2.0) / factor, mask


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Per sample: the mean of values [B, h, w] over the mask, 0 where the mask is empty."""
    return tf.reduce_sum(values * mask, axis=[1, 2]) / tf.maximum(tf.reduce_sum(mask, axis=[1, 2]), 1.0)


def flow_l1(expected: tf.Tensor, true: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Per sample: mean over the mask of |expected - true|_1 (x and y, level pixels)."""
    return masked_mean(tf.reduce_sum(tf.abs(expected - true), axis=-1), mask)


def dense_cross_entropy(log_attention: tf.Tensor, true: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Per sample: mean over the mask of the cross-entropy of the dense level's attention
    [B, N, N] against the true position (x, y) [B, h, w, 2], spread bilinearly over its
    four nearest positions (clamped into the map)."""
    b, h, w = tf.shape(true)[0], tf.shape(true)[1], tf.shape(true)[2]
    x = tf.clip_by_value(true[..., 0], 0.0, tf.cast(w - 1, true.dtype))
    y = tf.clip_by_value(true[..., 1], 0.0, tf.cast(h - 1, true.dtype))
    x0 = tf.minimum(tf.floor(x), tf.cast(tf.maximum(w - 2, 0), x.dtype))
    y0 = tf.minimum(tf.floor(y), tf.cast(tf.maximum(h - 2, 0), y.dtype))
    fx, fy = x - x0, y - y0
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, w - 1), tf.minimum(y0 + 1, h - 1)
    index = tf.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], axis=-1)
    share = tf.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    picked = tf.gather(log_attention, tf.reshape(index, [b, h * w, 4]), batch_dims=2)
    entropy = -tf.reduce_sum(tf.reshape(share, [b, h * w, 4]) * picked, axis=-1)
    return masked_mean(tf.reshape(entropy, [b, h, w]), mask)


def flow_supervision(out: dict, flow: tf.Tensor, flow_mask: tf.Tensor, gamma: float,
                     factors: list[int]) -> tf.Tensor:
    """Per sample: the dense level's cross-entropy against the true coarsest position, plus,
    at every PatchMatch level, the L1 error of each iteration's expected position,
    weighted gamma^(T - t) over its T iterations as RAFT does (the last counts most).
    `out` is the correspondence's training output, `factors` each level's downsampling;
    pixels whose flow is unknown (flow_mask 0, or pairs without flow) count nowhere."""
    true, mask = flow_at_level(flow, flow_mask, factors[0])
    total = dense_cross_entropy(out["dense_log_attention"], true, mask)
    for trajectory, factor in zip(out["trajectories"], factors[1:]):
        true, mask = flow_at_level(flow, flow_mask, factor)
        steps = len(trajectory)
        for t, expected in enumerate(trajectory, start=1):
            total += gamma ** (steps - t) * flow_l1(expected, true, mask)
    return total
