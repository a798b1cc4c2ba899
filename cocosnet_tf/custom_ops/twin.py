"""The compiled ops' twins in TensorFlow ops: what each op computes, and what runs when
it does not (the default, XLA, exports)."""

from __future__ import annotations

import tensorflow as tf


def candidate_scores(queries: tf.Tensor, values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """scores [B, M, K] = <queries [B, M, C], values [B, N, C] at rows index [B, M, K]>,
    through the gathered candidates [B, M, K, C]."""
    return tf.einsum("bmc,bmkc->bmk", queries, tf.gather(values, index, batch_dims=1))
