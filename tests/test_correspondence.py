import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import gaussian_filter

from cocosnet_tf.config import RuntimeConfig
from cocosnet_tf.data.geometry import SmoothWarp, sample_bilinear, xy_grid
from cocosnet_tf.models.cocosnet.correspondence.network import CorrespondenceNet, dense_level
from cocosnet_tf.models.cocosnet.correspondence.patchmatch import LevelMaps, PatchMatchLevel, initial_offsets, propagate
from cocosnet_tf.runtime import runtime_settings

C = 16


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def random_field(rng, h, w):
    """Smooth but discriminative unit features [h, w, C]."""
    return unit(gaussian_filter(rng.normal(size=(h, w, C)), sigma=(2.0, 2.0, 0))).astype(np.float32)


def level_truth(kind, factor, h, w, full):
    """True exemplar position (row, col) of each pixel of a level `factor` times smaller."""
    yx = xy_grid(h, w)[..., ::-1]  # (row, col)
    if kind == "shift":
        return yx + np.array([8, -16]) / factor
    xy_full = full.forward((xy_grid(h, w) + 0.5) * factor - 0.5)
    return ((xy_full + 0.5) / factor - 0.5)[..., ::-1]


def level_features(rng, kind, factor, size, full):
    h, w = size[0] // factor, size[1] // factor
    exemplar = random_field(rng, h, w)
    truth = level_truth(kind, factor, h, w, full)
    inside = (truth[..., 0] >= 0) & (truth[..., 0] <= h - 1) & (truth[..., 1] >= 0) & (truth[..., 1] <= w - 1)
    source = sample_bilinear(exemplar, truth[..., ::-1])
    features = np.where(inside[..., None], unit(source), random_field(rng, h, w))
    return features[None], exemplar[None], truth, inside


def zero_update(level):
    """Silence the ConvGRU: its flow head predicts no correction."""
    head = level.update.head_2
    head.kernel.assign(tf.zeros_like(head.kernel))
    head.bias.assign(tf.zeros_like(head.bias))


def within_reach(found, truth, inside, kind):
    """Share of pixels whose found position is within reach of the truth.

    Shift (even at every level): within one pixel. Smooth warp: the official
    initialisation doubles the coarse match and adds even window offsets, and
    propagation only hands offsets over, so without the ConvGRU every offset stays even
    and a pixel reaches exemplar positions of its own parity only, up to 1 px per axis
    from a non-integer truth (two such positions tie where the truth lies between
    them). There: within 1.25 px, and 99% within 1.5 px. The ConvGRU's continuous
    corrections are what close that gap.
    """
    error = np.abs(found - truth).max(-1)[inside]
    if kind == "shift":
        return np.mean(error <= 1.0)
    assert np.mean(error <= 1.5) >= 0.99
    return np.mean(error <= 1.25)


@pytest.mark.parametrize("kind", ["shift", "smooth"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_patchmatch_alone_recovers_known_correspondence(kind, mode):
    rng = np.random.default_rng(0)
    size = (96, 128)
    full = SmoothWarp.random(np.random.default_rng(5), *size, strength=1.0)
    feats, ex, truth, inside = level_features(rng, kind, 8, size, full)
    pooled = np.zeros(feats.shape[:3] + (3,), np.float32)
    _, _, best, _ = dense_level(tf.constant(feats), tf.constant(ex), tf.constant(pooled), 0.01, False, True)
    err = np.abs(best.numpy()[0] - truth).max(-1)[inside]
    assert np.mean(err <= 1.0) >= 0.95
    for factor in (4, 2, 1):
        feats, ex, truth, inside = level_features(rng, kind, factor, size, full)
        with runtime_settings(RuntimeConfig(chunk=1000)):
            level = PatchMatchLevel(sampling=mode)
        init = initial_offsets(best)
        colours = np.zeros(feats.shape[:3] + (3,), np.float32)
        level(tf.constant(feats), tf.constant(ex), tf.constant(colours), init)  # build
        zero_update(level)
        out = level(tf.constant(feats), tf.constant(ex), tf.constant(colours), init)
        best = out["positions"][..., 0, :]
        within = within_reach(best.numpy()[0], truth, inside, kind)
        assert within >= 0.95, f"1/{factor}: only {within:.3f} of pixels within reach"


def test_propagation_hands_over_neighbours_offsets_with_zero_borders():
    offsets = tf.reshape(tf.range(1, 2 * 3 * 2 + 1, dtype=tf.float32), [1, 2, 3, 1, 2])
    o = offsets.numpy()[0, :, :, 0]
    horizontal = propagate(offsets, horizontal=True).numpy()[0]
    assert horizontal.shape == (2, 3, 3, 2)
    for r in range(2):
        for c in range(3):
            np.testing.assert_array_equal(horizontal[r, c, 1], o[r, c])
            np.testing.assert_array_equal(horizontal[r, c, 0], o[r, c - 1] if c > 0 else 0)
            np.testing.assert_array_equal(horizontal[r, c, 2], o[r, c + 1] if c < 2 else 0)
    vertical = propagate(offsets, horizontal=tf.constant(False)).numpy()[0]
    np.testing.assert_array_equal(vertical[0, 1, 0], 0)
    np.testing.assert_array_equal(vertical[0, 1, 2], o[1, 1])
    np.testing.assert_array_equal(vertical[1, 2, 0], o[0, 2])
    np.testing.assert_array_equal(vertical[1, 2, 2], 0)


def test_initialisation_is_the_doubled_coarse_match_plus_a_dilated_window():
    best = np.array([[[[1.0, 2.0], [0.0, 0.0]], [[3.0, 1.0], [2.0, 2.0]]]], np.float32)  # [1, 2, 2, 2]
    offsets = initial_offsets(tf.constant(best)).numpy()[0]
    assert offsets.shape == (4, 4, 16, 2)
    window = np.array([(a, b) for a in (-2, 0, 2, 4) for b in (-2, 0, 2, 4)])
    for y in range(4):
        for x in range(4):
            positions = offsets[y, x] + (y, x)
            expected = 2 * best[0, y // 2, x // 2] + (y % 2, x % 2) + window
            np.testing.assert_allclose(positions, expected)


def brute_force_top(queries, values, positions, h, w, mode, k, temperature):
    """NumPy scores of every candidate, then the top k (positions and probabilities).

    Selection scores the official index ('nearest': row * W + column, floored) or, for
    'bilinear', the rounded position: it carries no gradient, so one pixel is enough.
    """
    flat = values.reshape(h * w, -1)
    if mode == "bilinear":
        positions = np.round(positions)
    y = np.clip(positions[..., 0], 0, h - 1).astype(np.float32)
    x = np.clip(positions[..., 1], 0, w - 1).astype(np.float32)
    index = np.floor(y * np.float32(w) + x).astype(int)  # the official flattening, then floor
    sampled = flat[index]
    logits = np.einsum("nc,nkc->nk", queries.reshape(h * w, -1), sampled) / temperature
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    return order, np.take_along_axis(probabilities, order, -1), np.stack([index // w, index % w], -1)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("chunk", [0, 7])
@pytest.mark.parametrize("horizontal", [True, False])
def test_propagate_and_select_keeps_the_brute_force_top_k(mode, chunk, horizontal):
    rng = np.random.default_rng(1)
    h, w = 6, 5
    queries = unit(rng.normal(size=(h * w, C))).astype(np.float32)
    values = unit(rng.normal(size=(h, w, C))).astype(np.float32)
    offsets = tf.constant(rng.uniform(-4, 4, size=(1, h, w, 16, 2)).astype(np.float32))
    with runtime_settings(RuntimeConfig(chunk=chunk)):
        level = PatchMatchLevel(sampling=mode)
    grid = xy_grid(h, w)[..., ::-1]  # (row, column)
    maps = LevelMaps(tf.constant(queries[None]), tf.constant(values.reshape(1, h * w, C)),
                     tf.constant(grid.astype(np.float32)), h, w)
    with tf.GradientTape() as tape:
        tape.watch(offsets)
        kept, _, probabilities = level._propagate_and_select(offsets, horizontal, maps)
        summed = tf.reduce_sum(kept)
    candidates = propagate(offsets, horizontal).numpy()[0].reshape(h * w, 48, 2)
    positions = candidates + grid.reshape(h * w, 1, 2)
    order, expected_p, scored = brute_force_top(queries, values, positions, h, w, mode, 16, 0.01)
    if mode == "nearest":  # the official code keeps the offsets of the pixels it scored
        kept_offsets = scored - grid.reshape(h * w, 1, 2)
    else:  # the continuous offsets, which carry the gradient
        kept_offsets = candidates
    expected_offsets = np.take_along_axis(kept_offsets, order[..., None], 1)
    np.testing.assert_allclose(kept.numpy().reshape(h * w, 16, 2), expected_offsets, atol=1e-6)
    np.testing.assert_allclose(probabilities.numpy().reshape(h * w, 16), expected_p, rtol=1e-4, atol=1e-6)
    if mode == "bilinear":  # the chosen offsets keep their gradient: each offset's is how often it was chosen
        chosen = np.zeros((h, w, 16))
        rows, cols = np.divmod(np.arange(h * w), w)
        for p, picks in enumerate(order):
            for c in picks:
                shift, k = c // 16 - 1, c % 16  # previous neighbour, own, next neighbour
                r, q = (rows[p], cols[p] + shift) if horizontal else (rows[p] + shift, cols[p])
                if 0 <= r < h and 0 <= q < w:  # outside the map a neighbour is zero
                    chosen[r, q, k] += 1
        gradient = tape.gradient(summed, offsets).numpy()[0]
        np.testing.assert_array_equal(gradient, np.repeat(chosen[..., None], 2, -1))


def small_net(sampling="bilinear", chunk=0, levels=3):
    with runtime_settings(RuntimeConfig(chunk=chunk)):
        return CorrespondenceNet(semantic_nc=5, nef=8, corr_levels=levels, patchmatch_iterations=2,
                                 sampling=sampling)


def inputs(batch=2, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    label = np.eye(5, dtype=np.float32)[rng.integers(0, 5, size=(batch, h // 4, w // 4))]
    label = np.repeat(np.repeat(label, 4, 1), 4, 2)
    exemplar = rng.uniform(-1, 1, size=(batch, h, w, 3)).astype(np.float32)
    return tf.constant(label), tf.constant(exemplar), tf.constant(label[:, :, ::-1])


def gradients(net, label, exemplar, exemplar_label):
    with tf.GradientTape() as tape:
        out = net(label, exemplar, exemplar_label, training=True)
        loss = tf.reduce_mean(tf.abs(out["warps"][-1] - tf.nn.avg_pool2d(exemplar, 2, 2, "VALID")))
    grads = tape.gradient(loss, net.trainable_variables)
    return {v.path: (0.0 if g is None else float(tf.reduce_max(tf.abs(g)))) for v, g in zip(net.trainable_variables, grads)}


def test_bilinear_sampling_trains_every_variable_including_the_convgru():
    net = small_net("bilinear")
    grads = gradients(net, *inputs())
    missing = [name for name, g in grads.items() if g == 0.0]
    assert not missing, f"no gradient for {missing}"
    assert any("refine_net" in name for name in grads) and any("initial_layer" in name for name in grads)


def test_nearest_sampling_leaves_the_convgru_untrained_as_the_official_code():
    # the official integer indices cut the ConvGRU and its initial convs off the loss
    net = small_net("nearest")
    grads = gradients(net, *inputs())
    gru = {name: g for name, g in grads.items() if "refine_net" in name or "initial_layer" in name}
    assert gru and all(g == 0.0 for g in gru.values())
    assert any(g > 0 for name, g in grads.items() if "adaptive_model" in name)


def test_outputs_shapes_batch_and_non_square():
    net = small_net()
    out = net(*inputs(batch=2, h=32, w=48))
    assert [tuple(w.shape) for w in out["warps"]] == [(2, 4, 6, 3), (2, 8, 12, 3), (2, 16, 24, 3)]
    assert out["cycle_warp"].shape == (2, 4, 6, 3)
    assert [tuple(p.shape) for p in out["positions"]] == [(2, 8, 12, 16, 2), (2, 16, 24, 16, 2)]
    np.testing.assert_allclose(tf.reduce_sum(out["weights"][-1], -1).numpy(), 1.0, rtol=1e-5)
    positions = out["positions"][-1].numpy()
    assert positions[..., 0].max() <= 23 and positions[..., 1].max() <= 15 and positions.min() >= 0
    assert len(out["features"]) == 3 and "target_features" not in out
    with_target = net(*inputs(batch=2, h=32, w=48), image=inputs()[1])
    assert [f.shape[-1] for f in with_target["target_features"]] == [32, 32, 16]


def test_refine_starts_patchmatch_from_the_given_coarse_match():
    net = CorrespondenceNet(semantic_nc=5, nef=8, corr_levels=2, patchmatch_iterations=0)  # the initial window, unchanged
    label, exemplar, exemplar_label = inputs(batch=2, h=32, w=48)
    _, _, theta, phi = net.projections(label, exemplar, exemplar_label)
    out = net.match(theta, phi, exemplar)
    # dense_best is (x, y); refine takes the coarsest match as (row, column)
    refined = net.refine(theta, phi, exemplar, tf.reverse(out["dense_best"], [-1]))
    for a, b in zip(out["warps"][1:] + out["positions"] + out["weights"],
                    refined["warps"] + refined["positions"] + refined["weights"], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    # from the identity, pixel (r, c) of the next level tries (c + dc, r + dr) for the
    # window's offsets (dr, dc) in -2, 0, 2, 4, clamped to the map
    coarse = xy_grid(4, 6).astype(np.float32)[..., ::-1]  # (row, column)
    positions = net.refine(theta, phi, exemplar, tf.broadcast_to(coarse, [2, 4, 6, 2]))["positions"][0].numpy()
    window = np.array([(dr, dc) for dr in (-2, 0, 2, 4) for dc in (-2, 0, 2, 4)])
    rows, cols = np.meshgrid(np.arange(8), np.arange(12), indexing="ij")
    expected = np.stack([np.clip(cols[..., None] + window[:, 1], 0, 11),
                         np.clip(rows[..., None] + window[:, 0], 0, 7)], -1)
    np.testing.assert_allclose(positions, np.broadcast_to(expected, positions.shape))


def test_batch_elements_are_independent():
    net = small_net()
    label, exemplar, exemplar_label = inputs(batch=2)
    both = net(label, exemplar, exemplar_label)
    second = net(label[1:], exemplar[1:], exemplar_label[1:])
    for a, b in zip(both["warps"], second["warps"]):
        np.testing.assert_allclose(a[1:].numpy(), b.numpy(), atol=1e-5)


def test_chunked_inference_equals_whole():
    whole, chunked = small_net(chunk=0), small_net(chunk=37)
    args = inputs()
    whole(*args)
    chunked(*args)
    chunked.set_weights(whole.get_weights())
    a, b = whole(*args), chunked(*args)
    for x, y in zip(a["warps"] + a["positions"] + [a["cycle_warp"], a["dense_best"]],
                    b["warps"] + b["positions"] + [b["cycle_warp"], b["dense_best"]]):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-6)


def test_dense_level_in_row_chunks_equals_whole():
    rng = np.random.default_rng(4)
    q, r = (tf.constant(rng.normal(size=(2, 6, 10, 8)).astype(np.float32)) for _ in range(2))
    pooled = tf.constant(rng.uniform(size=(2, 6, 10, 3)).astype(np.float32))
    for locality in (0.0, 5.0):
        whole = dense_level(q, r, pooled, 0.1, cycle=True, hard_best=True, locality=locality)
        for chunk in (16, 7 * 16, 60 * 16):  # 1 row, 7 rows (ragged last chunk), all rows
            parts = dense_level(q, r, pooled, 0.1, cycle=True, hard_best=True, chunk=chunk, locality=locality)
            for x, y in zip(whole[:3], parts[:3]):
                np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-5)


def test_dense_level_locality_keeps_indistinct_positions_at_the_identity():
    # every position has the same features: without the prior the attention is uniform
    # and the warp the map's mean; with it each position attends mostly to itself
    q = tf.ones([1, 6, 8, 4])
    pooled = tf.constant(np.random.default_rng(5).uniform(size=(1, 6, 8, 3)).astype(np.float32))
    uniform, _, _, _ = dense_level(q, q, pooled, 0.01, cycle=False, hard_best=False)
    np.testing.assert_allclose(uniform.numpy(), np.broadcast_to(pooled.numpy().mean((1, 2), keepdims=True),
                                                                uniform.shape), atol=1e-5)
    local, _, best, _ = dense_level(q, q, pooled, 0.01, cycle=False, hard_best=True, locality=400.0)
    rows, cols = np.meshgrid(np.arange(6), np.arange(8), indexing="ij")
    np.testing.assert_array_equal(best.numpy()[0], np.stack([rows, cols], -1))
    assert np.abs(local.numpy() - pooled.numpy()).mean() < 0.1 * np.abs(uniform.numpy() - pooled.numpy()).mean()


def test_eager_graph_and_xla_agree():
    net = small_net(chunk=64)
    args = inputs(batch=2, h=32, w=48, seed=3)
    eager = net(*args)
    graph = tf.function(lambda *a: net(*a))(*args)
    xla = tf.function(lambda *a: net(*a), jit_compile=True)(*args)
    for other in (graph, xla):
        np.testing.assert_allclose(eager["warps"][0].numpy(), other["warps"][0].numpy(), atol=1e-4)
        np.testing.assert_allclose(eager["cycle_warp"].numpy(), other["cycle_warp"].numpy(), atol=1e-4)
        for a, b in zip(eager["warps"][1:], other["warps"][1:]):
            # float reassociation (XLA fuses differently) may flip near-ties in the top-K
            # choice of untrained features: nearly every pixel must agree
            close = np.abs(a.numpy() - b.numpy()).max(-1) < 1e-3
            assert close.mean() > 0.97


def test_training_order_is_seeded_and_inference_is_fixed():
    args = inputs()
    nets = [small_net(), small_net()]
    for net in nets:
        net(*args)
    nets[1].set_weights(nets[0].get_weights())
    # the same seed draws the same propagation orders in training
    a, b = (net(*args, training=True) for net in nets)
    for x, y in zip(a["positions"], b["positions"]):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    first, again = nets[0](*args), nets[0](*args)
    for x, y in zip(first["positions"], again["positions"]):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_aligned_upsampling_is_torchs_in_the_input_dtype():
    """nn.Upsample(scale_factor=2, bilinear, align_corners=True): output i samples input
    i * (n - 1) / (2n - 1); float64 stays float64 (tf.image computes in float32)."""
    from cocosnet_tf.models.cocosnet.correspondence.alignment import upsample_bilinear_aligned

    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3))
    expected = x
    for axis in (1, 2):
        n = x.shape[axis]
        source = np.arange(2 * n) * (n - 1) / (2 * n - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, n - 1)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        fraction = (source - low).reshape(shape)
        expected = np.take(expected, low, axis) * (1 - fraction) + np.take(expected, high, axis) * fraction
    ours = upsample_bilinear_aligned(tf.constant(x))
    assert ours.dtype == tf.float64 and ours.shape == (2, 10, 14, 3)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-14)
    reference = tf.raw_ops.ResizeBilinear(images=tf.constant(x, tf.float32), size=[10, 14], align_corners=True)
    np.testing.assert_allclose(upsample_bilinear_aligned(tf.constant(x, tf.float32)).numpy(), reference.numpy(),
                               atol=1e-6)
