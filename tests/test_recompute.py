"""Gradient checkpointing (`runtime.recompute`) changes memory, never gradients.

Each block is built twice, with and without recompute, with the same weights; in
training both give the same gradient for every input and every variable. Tolerances
are relative to each gradient's scale plus 1e-6 of the block's largest gradient: the
biases of convolutions followed by an instance norm have a true gradient of zero, and
what is computed for them is rounding noise that differs with the order of the sums.
"""

import time

import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.config import RuntimeConfig
from cocosnet_tf.layers.remat import in_sequence, rematerialized
from cocosnet_tf.models.cocosnet.correspondence.alignment import AlignmentUNet
from cocosnet_tf.models.cocosnet.correspondence.patchmatch import PatchMatchLevel, initial_offsets
from cocosnet_tf.models.cocosnet.generator import Generator
from cocosnet_tf.runtime import runtime_settings

RNG = np.random.default_rng(0)


def tensor(*shape, low=None):
    values = RNG.uniform(low, 1, size=shape) if low is not None else RNG.normal(size=shape)
    return tf.constant(values.astype(np.float32))


def gradients(layer, inputs, call):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = call(layer, *inputs)
        return loss, tape.gradient(loss, list(inputs) + layer.trainable_variables)

    loss, grads = step()
    return float(loss), [g.numpy() for g in grads]


def made_with(make, **runtime):
    with runtime_settings(RuntimeConfig(**runtime)):
        return make()


def assert_same_gradients(make, inputs, call, scale=1.0, **runtime):
    """`make()` made without and with recompute (and `runtime`'s other settings)."""
    plain = made_with(make, **runtime, recompute=False)
    checkpointed = made_with(make, **runtime, recompute=True)
    call(plain, *inputs, training=False)
    call(checkpointed, *inputs, training=False)
    # official-scale weights (0.02) leave the deep paths' gradients (the update block's, the
    # SPADE conditioning's) too small to tell apart from rounding: scale the kernels up
    plain.set_weights([w * scale if w.ndim == 4 else w for w in plain.get_weights()])
    checkpointed.set_weights(plain.get_weights())
    loss, expected = gradients(plain, inputs, call)
    again, got = gradients(checkpointed, inputs, call)
    assert again == pytest.approx(loss, rel=1e-6)
    names = [f"input {i}" for i in range(len(inputs))] + [v.path for v in plain.trainable_variables]
    largest = max(np.max(np.abs(g)) for g in expected)
    for name, g, h in zip(names, expected, got):
        assert np.max(np.abs(g)) > 0, f"{name}: no gradient"
        np.testing.assert_allclose(h, g, rtol=1e-4, atol=1e-4 * np.max(np.abs(g)) + 1e-6 * largest, err_msg=name)
    return names


def test_patchmatch_level_in_bands_with_the_final_step_in_chunks():
    h, w = 16, 24  # 384 positions: three chunks of 100 and a ragged one

    def call(level, features, exemplar_features, best, training=True):
        out = level(features, exemplar_features, EXEMPLAR, initial_offsets(best), training=training)
        return tf.reduce_mean(tf.abs(out["warp"] - EXEMPLAR))

    EXEMPLAR = tensor(2, h, w, 3, low=-1)
    inputs = [tensor(2, h, w, 8), tensor(2, h, w, 8), 7 * tensor(2, h // 2, w // 2, 2, low=0)]
    names = assert_same_gradients(
        lambda: PatchMatchLevel(patchmatch_iterations=1, temperature=0.1), inputs, call, scale=30.0, chunk=100,
        recompute_band=48)
    assert any("refine_net/gru" in n for n in names) and any("initial_layer" in n for n in names)


def test_alignment_unet():
    def call(unet, x, training=True):
        return tf.add_n([tf.reduce_mean(f * f) for f in unet(x, training=training)])

    assert_same_gradients(lambda: AlignmentUNet(nef=4, corr_levels=4), [tensor(2, 32, 32, 5)], call, scale=10.0,
                          recompute_band=64)


def test_generator_passes_gradients_to_the_warps():
    def call(generator, label, coarse, fine, training=True):
        # a smooth loss: with |output| an output near 0 can take either sign in the two
        # runs' rounding and flip its share of the gradient (seen once under pytest -n 2)
        return tf.reduce_mean(tf.square(generator(label, [coarse, fine], training=training)))

    assert_same_gradients(lambda: Generator(5, corr_levels=2, ngf=4),
                          [tensor(1, 64, 64, 5), tensor(1, 8, 8, 3), tensor(1, 16, 16, 3)], call, scale=10.0)


@pytest.mark.parametrize("sequenced", [True, False])
def test_spans_run_one_after_the_other_in_both_passes(sequenced):
    """in_sequence forces its spans' order; without it the graph executor runs
    independent spans side by side (the control: each span as its own checkpointed block)."""
    intervals = []

    def record(x):
        start = time.perf_counter()
        time.sleep(0.05)  # releases the GIL: spans scheduled together overlap
        intervals.append((start, time.perf_counter()))
        return np.float32(0)

    def block(x, shared):
        # stateless: tf.function orders stateful ops (py_function) by itself
        marker = tf.numpy_function(record, [x], tf.float32, stateful=False)
        return tf.tanh(x * shared) + tf.stop_gradient(marker)

    spans = [(i, i + 2) * 2 for i in range(0, 8, 2)]

    @tf.function  # arguments, not captured constants: grappler would fold the markers
    def step(x, shared):
        with tf.GradientTape() as tape:
            tape.watch([x, shared])
            if sequenced:
                y = in_sequence(block, [x, shared], [True, False], spans)
            else:
                y = tf.concat([rematerialized(block, True)(x[:, a:b], shared) for a, b, _, _ in spans], axis=1)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, shared])

    step(tensor(1, 8, 3), tensor(1, 1, 3))
    assert len(intervals) == 8  # 4 spans forward, 4 recomputed backward
    ordered = sorted(intervals)
    overlaps = sum(later[0] < earlier[1] for earlier, later in zip(ordered, ordered[1:]))
    assert (overlaps == 0) == sequenced, f"{overlaps} overlapping spans"


def test_a_checkpointed_block_is_recomputed_only_once_every_output_has_its_gradient():
    """The block's first output is unused, so its gradient (zero) exists at once;
    the second output's gradient passes a slow op first. tf.recompute_grad waited for
    the first output's gradient only, and recomputed the block (holding its activations)
    while the slow op still ran."""
    marks = {"block": [], "slow gradient done": []}

    def record(name):
        def note(x):
            if name == "slow gradient done":
                time.sleep(0.3)  # releases the GIL: anything ready runs meanwhile
            marks[name].append(time.perf_counter())
            return np.float32(0)
        return note

    def block(x):
        marker = tf.numpy_function(record("block"), [x], tf.float32, stateful=False)
        y = tf.tanh(x) + tf.stop_gradient(marker)
        return y, 2 * y

    @tf.custom_gradient
    def slow_backward(x):
        def gradient(g):
            return g + tf.numpy_function(record("slow gradient done"), [g], tf.float32, stateful=False)
        return tf.identity(x), gradient

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            _, second = rematerialized(block, True)(x)
            loss = tf.reduce_sum(slow_backward(second) ** 2)
        return tape.gradient(loss, x)

    x = tensor(1, 4, 3)
    np.testing.assert_allclose(step(x).numpy(), 8 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-5, atol=1e-6)
    assert len(marks["block"]) == 2 and len(marks["slow gradient done"]) == 1  # forward, recomputation
    assert marks["block"][1] > marks["slow gradient done"][0], "recomputed before the slow gradient was done"
