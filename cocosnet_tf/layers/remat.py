"""Gradient checkpointing: keep a block's inputs for the backward pass, not its
activations, and run the block again when its gradient is needed."""

from __future__ import annotations

import tensorflow as tf


def rematerialized(block, enabled: bool):
    """`block` (a layer or function of tensors) itself, or checkpointed: its inputs are
    kept for the backward pass, not its activations, and it runs again when its gradient
    is needed. Every floating positional argument and every variable the block reads gets
    its gradient (integer and boolean arguments are passed through: they have none).

    At 512x512 the full-resolution blocks (the 128-channel SPADE maps of the alignment
    U-Nets and the generator, the update block's motion encoder and GRU, the final
    bilinear step's N x K x 4 corner samples) would otherwise keep gigabytes of
    activations for the backward pass; recomputing them costs one more forward of each.
    It is `in_sequence` with one span, the whole block, rather than tf.recompute_grad,
    whose recomputation waits for the gradient of the block's first output only: a block
    whose first output nothing reads (the last PatchMatch iteration's hidden state) gets
    a zero gradient for it at once, and its activations were recomputed at the start of
    the backward pass and held until the gradient of its other outputs came.
    """
    if not enabled:
        return block

    def run(*tensors):
        return in_sequence(block, tensors, [False] * len(tensors), [WHOLE])

    return run


def banded(block, enabled: bool, radius: int, positions: int):
    """`block` over bands of rows, in training with recompute; `block` itself otherwise.

    Every argument is [B, H, ...] with the same H (axis 1), every output too. `block` must
    be local: each output row depends on input rows at most `radius` away (convolutions'
    and propagations' reach, summed). Each band then runs on its rows plus `radius` rows
    of context on either side and keeps its own rows, which are exactly those of the
    whole map (whatever the padding at a band's cut edge does reaches no further than
    `radius` rows in); gradients are exact too. A band covers about `positions` pixels,
    and the bands run one after the other (`in_sequence`), so either pass holds one
    band's activations, not the whole map's. With `positions` 0, or a map that fits one
    band, the block runs whole, checkpointed.
    """
    if not enabled:
        return block
    whole = rematerialized(block, True)

    def run(*tensors):
        height, width = tensors[0].shape[1], tensors[0].shape[2]
        if positions <= 0 or height is None or width is None or height * width <= positions:
            return whole(*tensors)
        rows = max(1, positions // width)
        spans = [(start, min(height, start + rows), max(0, start - radius), min(height, start + rows + radius))
                 for start in range(0, height, rows)]
        return in_sequence(block, tensors, [True] * len(tensors), spans)

    return run


WHOLE = (0, None, 0, None)  # the span of in_sequence that is the whole of axis 1


def zero_after(tensors) -> tf.Tensor:
    """A scalar 0 that depends on every tensor of `tensors` and cannot be folded away."""
    first = tf.add_n([tf.cast(tf.reduce_max(tf.reshape(t, [-1])[:1]), tf.float32) for t in tensors])
    flag = tf.cast(first, tf.bool)
    return tf.where(tf.equal(flag, flag), 0.0, float("nan"))


def in_sequence(block, tensors, sliced, spans):
    """block over spans of axis 1, one span after the other in the forward pass and in
    the backward pass, which recomputes each span's activations (checkpointing).

    A span (start, stop, low, high) runs `block` on rows low:high of every argument
    whose `sliced` is true (the others whole) and keeps rows start:stop of each output
    (start - low:stop - low of what it returned); the outputs are those rows, concatenated.
    The order is forced with control dependencies: the graph executor would otherwise
    run independent spans side by side and hold their activations together, and keep
    every span's gradient of a whole argument until the last one is done. Here the
    gradients are summed as the spans finish. Floating arguments and the variables the
    block reads get gradients; integer and boolean ones are passed through.
    """
    floating = [t.dtype.is_floating for t in tensors]
    structure = []

    def arguments(given):
        given = iter(given)
        return [next(given) if f else t for t, f in zip(tensors, floating)]

    def run_span(span, args):
        start, stop, low, high = span
        result = block(*[t[:, low:high] if cut else t for t, cut in zip(args, sliced)])
        structure[:] = [result]
        if stop is None:  # WHOLE
            return tf.nest.flatten(result)
        return [r[:, start - low:stop - low] for r in tf.nest.flatten(result)]

    def after(done, inputs):
        with tf.control_dependencies(done):
            return [tf.identity(t) for t in inputs]

    @tf.custom_gradient
    def sequenced(*inputs):
        pieces = []
        for span in spans:
            pieces.append(run_span(span, arguments(after(pieces[-1] if pieces else [], inputs))))
        outputs = [tf.concat(parts, axis=1) if len(parts) > 1 else parts[0] for parts in zip(*pieces)]

        def gradient(*output_gradients, variables=()):
            summed = None  # the gradients of the inputs, then of the variables
            done = list(output_gradients)
            for span in spans:
                start, stop = span[:2]
                own = after(done, inputs)
                if len(spans) == 1:
                    # XLA drops control dependencies, and would merge the recomputation
                    # with the forward pass it repeats: as tf.recompute_grad, also add a
                    # zero computed from the gradients (bands are not XLA-safe: docs/memory.md)
                    zero = zero_after(done)
                    own = [t + tf.cast(zero, t.dtype) for t in own]
                with tf.GradientTape() as tape:
                    tape.watch(own)
                    result = run_span(span, arguments(own))
                grads = tape.gradient(result, own + list(variables),
                                      output_gradients=[g if stop is None else g[:, start:stop]
                                                        for g in output_gradients],
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                summed = grads if summed is None else [a + b for a, b in zip(summed, grads)]
                done = summed
            return summed[:len(inputs)], summed[len(inputs):]

        return outputs, gradient

    outputs = sequenced(*[t for t, f in zip(tensors, floating) if f])
    return tf.nest.pack_sequence_as(structure[0], list(outputs))
