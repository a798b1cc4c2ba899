"""Gradient checkpointing: keep a block's inputs for the backward pass, not its
activations, and run the block again when its gradient is needed."""

from __future__ import annotations

import tensorflow as tf


def rematerialized(block, enabled: bool):
    """`block` (a layer or function of tensors) itself, or under tf.recompute_grad: every
    floating positional argument and every variable the block reads gets its gradient
    (integer and boolean arguments are passed through: they have none).

    At 512x512 the full-resolution blocks (the 128-channel SPADE maps of the alignment
    U-Nets and the generator, the update block's motion encoder and GRU, the final
    bilinear step's N x K x 4 corner samples) would otherwise keep gigabytes of
    activations for the backward pass; recomputing them costs one more forward of each.
    """
    if not enabled:
        return block

    def run(*tensors):
        floating = [t.dtype.is_floating for t in tensors]

        def differentiable(*args):
            given = iter(args)
            return block(*[next(given) if f else t for t, f in zip(tensors, floating)])

        return tf.recompute_grad(differentiable)(*[t for t, f in zip(tensors, floating) if f])

    return run


def banded(block, enabled: bool, radius: int, positions: int):
    """`block` over bands of rows, recomputed one band after the other in the backward
    pass, in training with recompute; `block` itself otherwise.

    Every argument is [B, H, ...] with the same H (axis 1), every output too. `block` must
    be local: each output row depends on input rows at most `radius` away (convolutions'
    and propagations' reach, summed). Each band then runs on its rows plus `radius` rows
    of context on either side and keeps its own rows, which are exactly those of the
    whole map (whatever the padding at a band's cut edge does reaches no further than
    `radius` rows in); gradients are exact too. A band covers about `positions` pixels.
    The backward pass recomputes and differentiates the bands in sequence (each waits for
    the previous band's gradients), so it holds one band's activations, not the whole
    map's; separate checkpointed blocks would be run side by side by the graph executor.
    With `positions` 0, or a map that fits one band, the block runs whole, checkpointed.
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
        floating = [t.dtype.is_floating for t in tensors]
        structure = []

        def band(span, arguments):
            start, stop, low, high = span
            result = block(*[t[:, low:high] for t in arguments])
            structure[:] = [result]
            return [r[:, start - low:stop - low] for r in tf.nest.flatten(result)]

        @tf.custom_gradient
        def sequenced(*inputs):
            given = iter(inputs)
            arguments = [next(given) if f else t for t, f in zip(tensors, floating)]
            pieces = [band(span, arguments) for span in spans]
            outputs = [tf.concat(parts, axis=1) for parts in zip(*pieces)]

            def gradient(*output_gradients, variables=()):
                input_gradients = [tf.zeros_like(t) for t in inputs]
                variable_gradients = [tf.zeros_like(v) for v in variables]
                done = list(output_gradients)
                for span in spans:
                    start, stop, low, high = span
                    with tf.control_dependencies(done):
                        own = [tf.identity(t) for t in inputs]
                    with tf.GradientTape() as tape:
                        tape.watch(own)
                        given_own = iter(own)
                        result = band(span, [next(given_own) if f else t for t, f in zip(tensors, floating)])
                    grads = tape.gradient(result, own + list(variables),
                                          output_gradients=[g[:, start:stop] for g in output_gradients],
                                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
                    input_gradients = [a + b for a, b in zip(input_gradients, grads[:len(own)])]
                    variable_gradients = [a + b for a, b in zip(variable_gradients, grads[len(own):])]
                    done = input_gradients + variable_gradients
                return input_gradients, variable_gradients

            return outputs, gradient

        outputs = sequenced(*[t for t, f in zip(tensors, floating) if f])
        return tf.nest.pack_sequence_as(structure[0], list(outputs))

    return run
