"""Gradient checkpointing: keep a block's inputs for the backward pass, not its
activations, and run the block again when its gradient is needed."""

from __future__ import annotations

import tensorflow as tf


def rematerialized(block, enabled: bool):
    """`block` (a layer or function of tensors) itself, or under tf.recompute_grad: every
    positional argument and every variable the block reads gets its gradient.

    At 512x512 the full-resolution blocks (the 128-channel SPADE maps of the alignment
    U-Nets and the generator, the update block's motion encoder and GRU, the final
    bilinear step's N x K x 4 corner samples) would otherwise keep gigabytes of
    activations for the backward pass; recomputing them costs one more forward of each.
    """
    return tf.recompute_grad(lambda *tensors: block(*tensors)) if enabled else block
