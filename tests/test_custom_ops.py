"""The compiled op equals its twin in TensorFlow ops, on values and gradients, alone and
inside the correspondence network; without its library the twin runs."""

import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf import custom_ops
from cocosnet_tf.config import RuntimeConfig
from cocosnet_tf.models.cocosnet.correspondence import sampling
from cocosnet_tf.models.cocosnet.correspondence.network import CorrespondenceNet
from cocosnet_tf.custom_ops import twin
from cocosnet_tf.models.training import global_policy
from cocosnet_tf.runtime import runtime_settings

TOLERANCE = {tf.float32: 1e-5, tf.float64: 1e-12}


@pytest.fixture(scope="module")
def ops():
    try:
        return custom_ops.library()
    except custom_ops.BuildError as err:
        pytest.skip(f"the compiled ops cannot be built here: {err}")


def random(rng, shape, dtype):
    return tf.constant(rng.normal(size=shape), dtype)


def with_gradients(fn, *tensors):
    """fn's value and the gradients of a random projection of it with respect to `tensors`."""
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        out = fn(*tensors)
        weights = tf.reshape(tf.cast(tf.range(tf.size(out)) % 7 - 3, out.dtype) / 3, tf.shape(out))
        loss = tf.reduce_sum(out * weights)
    return [out, *tape.gradient(loss, tensors)]


def assert_close(ours, theirs, dtype, tolerance=None):
    tolerance = tolerance or TOLERANCE[dtype]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if a is None or b is None:
            assert a is None and b is None
            continue
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_candidate_scores_equal_the_twin_on_values_and_gradients(ops, dtype):
    rng = np.random.default_rng(0)
    b, m, n, k, c = 2, 37, 23, 9, 13
    queries, values = random(rng, [b, m, c], dtype), random(rng, [b, n, c], dtype)
    index = rng.integers(0, n, size=(b, m, k))
    index[0, 0], index[1, -1] = 0, n - 1  # the first and last rows, and rows chosen by many candidates
    index[:, 5:9] = 3
    index = tf.constant(index, tf.int32)
    ours = with_gradients(lambda q, v: custom_ops.candidate_scores(q, v, index), queries, values)
    theirs = with_gradients(lambda q, v: twin.candidate_scores(q, v, index), queries, values)
    assert ours[0].shape == (b, m, k) and ours[0].dtype == dtype
    assert_close(ours, theirs, dtype)


def test_candidate_scores_refuse_an_index_outside_the_values(ops):
    queries, values = tf.zeros([1, 2, 4]), tf.zeros([1, 5, 4])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"index 5 at flat position 3 is outside \[0, 5\)"):
        custom_ops.candidate_scores(queries, values, tf.constant([[[0, 1], [4, 5]]]))


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_scores_at_positions_inside_on_the_edges_and_outside_equal_the_tensorflow_ops(ops, mode, dtype):
    rng = np.random.default_rng(1)
    h, w, c, k = 6, 7, 5, 4
    queries, values = random(rng, [2, 11, c], dtype), random(rng, [2, h * w, c], dtype)
    positions = rng.uniform(-2, 9, size=(2, 11, k, 2))
    positions[0, :3] = [[0, 0], [h - 1, w - 1], [h - 1, 0], [0, w - 1]]  # the corners, exactly
    positions = tf.constant(positions, dtype)

    def scores(compiled):
        return lambda q, v, p: sampling.scores(q, v, p, h, w, mode, 0.5, compiled)

    assert_close(with_gradients(scores(True), queries, values, positions),
                 with_gradients(scores(False), queries, values, positions), dtype)


def small_net(compiled_ops):
    with runtime_settings(RuntimeConfig(chunk=0, compiled_ops=compiled_ops)), global_policy("float64"):
        return CorrespondenceNet(semantic_nc=3, nef=8, corr_levels=3, patchmatch_iterations=2, dtype="float64")


def test_the_network_with_compiled_ops_equals_the_network_without(ops):
    rng = np.random.default_rng(2)
    label = tf.constant(np.eye(3)[rng.integers(0, 3, size=(1, 32, 32))])
    exemplar = tf.constant(rng.uniform(-1, 1, size=(1, 32, 32, 3)))
    compiled, plain = small_net(True), small_net(False)
    compiled(label, exemplar, label)
    plain(label, exemplar, label)
    plain.set_weights(compiled.get_weights())
    for training in (False, True):
        results = []
        for net in (compiled, plain):
            with tf.GradientTape() as tape:
                warp = net(label, exemplar, label, training=training)["warps"][-1]
                loss = tf.reduce_sum(tf.abs(warp - tf.nn.avg_pool2d(exemplar, 2, 2, "VALID")))
            results.append([warp, *tape.gradient(loss, net.trainable_variables)])
        # a whole network's gradients, magnified by the temperature's 1/0.01, reach 1e3
        assert_close(*results, tf.float64, tolerance=1e-9)


def test_without_its_library_the_twin_runs_with_one_warning(monkeypatch):
    def missing():
        raise custom_ops.BuildError("the compiled ops need a C++ compiler, and none was found")

    monkeypatch.setattr(custom_ops, "library", missing)
    custom_ops._unavailable.cache_clear()
    try:
        queries, values = tf.ones([1, 3, 2]), tf.reshape(tf.range(12.0), [1, 6, 2])
        positions = tf.constant([[[[0.0, 0.0]], [[1.0, 2.0]], [[5.0, 9.0]]]])
        with pytest.warns(RuntimeWarning, match="none was found; using TensorFlow ops instead") as warned:
            ours = sampling.scores(queries, values, positions, 2, 3, "nearest", 1.0, compiled=True)
            sampling.scores(queries, values, positions, 2, 3, "bilinear", 1.0, compiled=True)
        assert len(warned) == 1
        np.testing.assert_array_equal(ours.numpy(), [[[1.0], [21.0], [21.0]]])
    finally:
        custom_ops._unavailable.cache_clear()


def test_xla_compiled_functions_score_with_the_twin(ops):
    queries, values = tf.ones([1, 3, 2]), tf.reshape(tf.range(12.0), [1, 6, 2])
    positions = tf.constant([[[[0.0, 0.0]], [[1.0, 2.0]], [[5.0, 9.0]]]])
    fn = tf.function(lambda: sampling.scores(queries, values, positions, 2, 3, "nearest", 1.0, True),
                     jit_compile=True)
    np.testing.assert_array_equal(fn().numpy(), [[[1.0], [21.0], [21.0]]])
