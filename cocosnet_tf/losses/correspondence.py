"""Losses of the correspondence network: warp-self, warp-cycle, domain alignment, and
the flow supervision (beyond the official code, for pairs whose true flow is known)."""

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


def level_targets(flow: tf.Tensor, factor: int) -> tf.Tensor:
    """Per full-size pixel, where its level pixel (of a level `factor` times smaller)
    should match: that level pixel's own position (x, y) plus the pixel's displacement
    flow - position at the level's scale. Every pixel of a level pixel that moves as one
    gives the same target, the block mean of the evaluation (metrics.flow_at_level)."""
    shape = tf.shape(flow)
    rows, cols = tf.meshgrid(tf.range(shape[1]), tf.range(shape[2]), indexing="ij")
    own = tf.cast(tf.stack([cols, rows], axis=-1), flow.dtype)
    return tf.floor(own / factor) + (flow - own) / factor


def to_full_size(level: tf.Tensor, factor: int) -> tf.Tensor:
    """[B, h, w, C] -> [B, h f, w f, C]: each level pixel's value on every pixel it covers."""
    return tf.repeat(tf.repeat(level, factor, axis=1), factor, axis=2)


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Per sample: the mean of values [B, H, W] over mask [B, H, W, 1], 0 where it is empty."""
    mask = mask[..., 0]
    return tf.reduce_sum(values * mask, axis=[1, 2]) / tf.maximum(tf.reduce_sum(mask, axis=[1, 2]), 1.0)


def flow_l1(candidates: tuple[tf.Tensor, tf.Tensor], flow: tf.Tensor, flow_mask: tf.Tensor,
            factor: int) -> tf.Tensor:
    """Per sample: mean over the known full-size pixels of sum_k w_k |p_k - true|_1 (x and
    y, in level pixels), where candidates = (positions p [B, h, w, K, 2], weights w
    [B, h, w, K]) are the positions the pixel's level pixel may match and true its own
    flow at that level. Each candidate's error counts by its weight: an L1 of the
    weighted mean position would be lowest for weights that hedge between wrong
    candidates on either side of the truth; this one is lowest for all weight on the
    nearest candidate. A level pixel across two layers that move apart is pulled towards
    the median of their flows."""
    positions, weights = candidates
    error = tf.reduce_sum(tf.abs(to_full_size(positions, factor) - level_targets(flow, factor)[:, :, :, None, :]), -1)
    return masked_mean(tf.reduce_sum(to_full_size(weights, factor) * error, axis=-1), flow_mask)


def dense_cross_entropy(log_attention: tf.Tensor, flow: tf.Tensor, flow_mask: tf.Tensor, factor: int) -> tf.Tensor:
    """Per sample: mean over the known full-size pixels of the cross-entropy of their
    level pixel's attention (the dense level's [B, N, N]) against their own true
    position there, spread bilinearly over its four nearest positions (clamped into the
    map). A level pixel whose pixels go to several places is so taught to attend to all
    of them, each by its share of pixels."""
    height, width = tf.shape(flow)[1], tf.shape(flow)[2]
    h, w = height // factor, width // factor
    true = level_targets(flow, factor)
    x = tf.clip_by_value(true[..., 0], 0.0, tf.cast(w - 1, true.dtype))
    y = tf.clip_by_value(true[..., 1], 0.0, tf.cast(h - 1, true.dtype))
    x0 = tf.minimum(tf.floor(x), tf.cast(tf.maximum(w - 2, 0), x.dtype))
    y0 = tf.minimum(tf.floor(y), tf.cast(tf.maximum(h - 2, 0), y.dtype))
    fx, fy = x - x0, y - y0
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, w - 1), tf.minimum(y0 + 1, h - 1)
    target = tf.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], axis=-1)  # [B, H, W, 4]
    share = tf.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    rows, cols = tf.meshgrid(tf.range(height) // factor, tf.range(width) // factor, indexing="ij")
    query = tf.broadcast_to((rows * w + cols)[None, :, :, None], tf.shape(target))  # each pixel's level pixel
    picked = tf.gather_nd(log_attention, tf.stack([query, target], axis=-1), batch_dims=1)
    return masked_mean(-tf.reduce_sum(share * picked, axis=-1), flow_mask)


def flow_supervision(out: dict, flow: tf.Tensor, flow_mask: tf.Tensor, gamma: float,
                     factors: list[int]) -> tf.Tensor:
    """Per sample: the dense level's cross-entropy against the true coarsest positions,
    plus, at every PatchMatch level, each iteration's weighted candidate error (flow_l1),
    weighted gamma^(T - t) over its T iterations as RAFT does (the last counts most).
    `out` is the correspondence's training output, `factors` each level's downsampling.
    Both are means over the full-size pixels whose flow is known (flow_mask [B, H, W, 1];
    0 on pairs without flow), so occluded points count nowhere."""
    total = dense_cross_entropy(out["dense_log_attention"], flow, flow_mask, factors[0])
    for trajectory, factor in zip(out["trajectories"], factors[1:]):
        steps = len(trajectory)
        for t, candidates in enumerate(trajectory, start=1):
            total += gamma ** (steps - t) * flow_l1(candidates, flow, flow_mask, factor)
    return total
