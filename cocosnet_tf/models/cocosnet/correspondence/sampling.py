"""Sampling flattened maps at candidate positions, bilinearly or as the official code.

Maps are flattened to [B, N, C] (N = H * W, row-major); positions are [B, M, K, 2]
in (row, column) pixel units. Positions are clamped into the map first, as the
official `offset_to_inds` does.
"""

from __future__ import annotations

import tensorflow as tf

from cocosnet_tf import custom_ops
from cocosnet_tf.custom_ops import twin
from cocosnet_tf.layers.remat import in_sequence, rematerialized


def clamp(positions: tf.Tensor, height, width) -> tuple[tf.Tensor, tf.Tensor]:
    y = tf.clip_by_value(positions[..., 0], 0.0, tf.cast(height - 1, positions.dtype))
    x = tf.clip_by_value(positions[..., 1], 0.0, tf.cast(width - 1, positions.dtype))
    return y, x


def nearest_index(positions: tf.Tensor, height, width) -> tf.Tensor:
    """The official integer index (int32 [B, M, K]): the clamped row and column
    flattened as row * W + column *before* flooring (PyTorch's `.long()` of
    `offset_to_inds`). After a ConvGRU update a row is fractional, and its fraction,
    times W, moves the column: that is what the official code computes and what its
    checkpoints expect. For integer positions it is the plain index."""
    y, x = clamp(positions, height, width)
    return tf.cast(tf.floor(y * tf.cast(width, y.dtype) + x), tf.int32)


def nearest_position(positions: tf.Tensor, height, width) -> tf.Tensor:
    """The (row, column) of `nearest_index`, as floats [B, M, K, 2]."""
    index = nearest_index(positions, height, width)
    return tf.cast(tf.stack([index // width, index % width], axis=-1), positions.dtype)


def corners(positions: tf.Tensor, height, width):
    """The bilinear neighbourhood of positions [B, M, K, 2]: the flat indices (int32
    [B, M, K]) of its top-left, top-right, bottom-left and bottom-right pixels, and the
    fractions (wy, wx) [B, M, K, 1] towards the bottom and the right."""
    y, x = clamp(positions, height, width)
    # the top-left corner stays one pixel inside, so the bottom-right one exists
    y0 = tf.minimum(tf.floor(y), tf.cast(tf.maximum(height - 2, 0), y.dtype))
    x0 = tf.minimum(tf.floor(x), tf.cast(tf.maximum(width - 2, 0), x.dtype))
    wy = (y - y0)[..., None]
    wx = (x - x0)[..., None]
    iy0, ix0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    iy1 = tf.minimum(iy0 + 1, height - 1)
    ix1 = tf.minimum(ix0 + 1, width - 1)
    return (iy0 * width + ix0, iy0 * width + ix1, iy1 * width + ix0, iy1 * width + ix1), (wy, wx)


def sample(values: tf.Tensor, positions: tf.Tensor, height, width, mode: str) -> tf.Tensor:
    """values [B, N, C] at positions [B, M, K, 2] -> [B, M, K, C].

    'bilinear' is differentiable in the positions; 'nearest' is the official floor.
    """
    if mode == "nearest":
        return tf.gather(values, nearest_index(positions, height, width), batch_dims=1)
    indices, (wy, wx) = corners(positions, height, width)
    corner_values = (tf.gather(values, i, batch_dims=1) for i in indices)
    return blend(*corner_values, wy, wx)


def blend(top_left, top_right, bottom_left, bottom_right, wy, wx):
    """The bilinear mix of the four corners' values (or of anything linear in them)."""
    top = top_left * (1 - wx) + top_right * wx
    bottom = bottom_left * (1 - wx) + bottom_right * wx
    return top * (1 - wy) + bottom * wy


def scores(queries: tf.Tensor, values: tf.Tensor, positions: tf.Tensor, height, width, mode: str,
           temperature: float, compiled: bool = False) -> tf.Tensor:
    """<query at m, value at candidate k> / temperature: queries [B, M, C] -> [B, M, K].

    `compiled` (runtime.compiled_ops) scores with the compiled op, which reads each
    candidate's row in place instead of gathering [B, M, K, C] (bilinearly: the corners'
    scores, weighted as the corners' values would be); the TensorFlow ops otherwise.
    """
    if mode == "nearest":
        index = nearest_index(positions, height, width)
        if custom_ops.enabled(compiled):
            return custom_ops.candidate_scores(queries, values, index) / temperature
        return twin.candidate_scores(queries, values, index) / temperature
    if not custom_ops.enabled(compiled):
        return tf.einsum("bmc,bmkc->bmk", queries, sample(values, positions, height, width, mode)) / temperature
    indices, (wy, wx) = corners(positions, height, width)
    corner_scores = (custom_ops.candidate_scores(queries, values, i) for i in indices)
    return blend(*corner_scores, wy[..., 0], wx[..., 0]) / temperature


def chunked(fn, tensors: list[tf.Tensor], chunk: int) -> tf.Tensor:
    """fn over slices of the M axis (axis 1) of every tensor, `chunk` rows at a time.

    Keeps peak memory at O(chunk * K * C) instead of O(M * K * C); a chunk of 0 or one
    covering M calls fn once. The result is concatenated back along axis 1.
    """
    m = tf.shape(tensors[0])[1]
    if chunk <= 0:
        return fn(*tensors)
    static_m = tensors[0].shape[1]
    if static_m is not None and static_m <= chunk:
        return fn(*tensors)
    count = (m + chunk - 1) // chunk
    pad = count * chunk - m

    def split(t):
        t = tf.pad(t, [[0, 0], [0, pad]] + [[0, 0]] * (t.shape.rank - 2))
        shape = tf.concat([tf.shape(t)[:1], [count, chunk], tf.shape(t)[2:]], 0)
        return tf.experimental.numpy.moveaxis(tf.reshape(t, shape), 1, 0)

    pieces = tf.map_fn(lambda parts: fn(*parts), [split(t) for t in tensors],
                       fn_output_signature=tensors[0].dtype, parallel_iterations=1)
    pieces = tf.experimental.numpy.moveaxis(pieces, 0, 1)  # [B, count, chunk, ...]
    out_shape = tf.concat([tf.shape(pieces)[:1], [count * chunk], tf.shape(pieces)[3:]], 0)
    return tf.reshape(pieces, out_shape)[:, :m]


def recomputed_chunks(fn, tensors: list[tf.Tensor], shared: list[tf.Tensor], chunk: int) -> tf.Tensor:
    """fn(*slices, *shared) over `chunk`-row slices of axis 1 of `tensors`, concatenated,
    for training: recomputed in the backward pass, and the slices run one after the other in both passes
    (`in_sequence`), so the backward pass holds one slice's intermediates and one
    running sum of the gradient of each `shared` tensor (a map_fn's gradient, as in
    `chunked`, keeps every slice's intermediates). The slices are unrolled, so M must be
    static, as it is for a training crop; with M unknown, or a chunk of 0, fn runs once,
    still recomputed. Every tensor, `shared` included, gets its gradient."""
    m = tensors[0].shape[1]
    if chunk <= 0 or m is None or m <= chunk:
        return rematerialized(fn, True)(*tensors, *shared)
    # (start, stop, low, high): a chunk needs no rows of context
    spans = [(start, min(m, start + chunk), start, min(m, start + chunk)) for start in range(0, m, chunk)]
    return in_sequence(fn, [*tensors, *shared], [True] * len(tensors) + [False] * len(shared), spans)
