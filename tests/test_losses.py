import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.losses import adversarial, contextual, correspondence, vgg


def test_hinge_values():
    real = [tf.constant([[2.0, 0.5]]), tf.constant([[-1.0, 1.0]])]
    fake = [tf.constant([[-2.0, 0.0]]), tf.constant([[3.0, -0.5]])]
    r, f = adversarial.hinge_discriminator(real, fake)
    # real: mean(relu(1 - x)): scale 0 -> (0 + 0.5) / 2, scale 1 -> (2 + 0) / 2; averaged
    assert r.numpy() == pytest.approx([(0.25 + 1.0) / 2])
    # fake: mean(relu(1 + x)): scale 0 -> (0 + 1) / 2, scale 1 -> (4 + 0.5) / 2
    assert f.numpy() == pytest.approx([(0.5 + 2.25) / 2])
    g = adversarial.hinge_generator(fake)
    assert g.numpy() == pytest.approx([(1.0 + -1.25) / 2])


def test_feature_matching_ignores_logits_and_is_zero_for_equal_features():
    a = [[tf.ones([2, 4, 4, 3]), tf.zeros([2, 2, 2, 1])]]
    b = [[tf.ones([2, 4, 4, 3]), tf.fill([2, 2, 2, 1], 7.0)]]
    assert np.allclose(adversarial.feature_matching(a, b).numpy(), 0.0)
    c = [[tf.fill([2, 4, 4, 3], 3.0), tf.zeros([2, 2, 2, 1])]]
    assert np.allclose(adversarial.feature_matching(c, b).numpy(), 2.0)


def test_contextual_loss_is_minimal_for_identical_features_and_grows_with_difference():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 6, 6, 16)).astype(np.float32))
    same = contextual.contextual(x, x).numpy()
    values = [same]
    for noise in (0.7, 1.5, 4.0):
        y = x + noise * tf.constant(rng.normal(size=(2, 6, 6, 16)).astype(np.float32))
        values.append(contextual.contextual(y, x).numpy())
    assert np.all(same >= 0) and np.all(same < 1e-3)
    assert np.all(np.diff(np.stack(values), axis=0) > 0), values
    # a spatial permutation of the same features costs (almost) nothing: CX ignores layout
    shuffled = tf.reshape(tf.gather(tf.reshape(x, [2, 36, 16]), rng.permutation(36), axis=1), [2, 6, 6, 16])
    assert np.all(contextual.contextual(shuffled, x).numpy() < 1e-3)


def test_warp_self_and_cycle_compare_with_pooled_targets():
    target = tf.constant(np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32))
    warps = [tf.nn.avg_pool2d(target, 4, 4, "VALID"), tf.nn.avg_pool2d(target, 2, 2, "VALID"), target]
    assert np.allclose(correspondence.warp_self(warps, target).numpy(), 0.0, atol=1e-6)
    off = [w + 0.5 for w in warps]
    assert np.allclose(correspondence.warp_self(off, target).numpy(), 1.5, atol=1e-6)
    assert np.allclose(correspondence.warp_cycle(warps[0] - 0.25, target).numpy(), 0.25, atol=1e-6)


def test_alignment_sums_levels():
    f = [tf.zeros([1, 2, 2, 4]), tf.zeros([1, 4, 4, 4])]
    t = [tf.fill([1, 2, 2, 4], 0.5), tf.fill([1, 4, 4, 4], -0.25)]
    assert correspondence.alignment(f, t).numpy() == pytest.approx([0.75])


def test_vgg_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(vgg.MissingWeightsError, match="losses.vgg_weights"):
        vgg.find_weights("")
    with pytest.raises(vgg.MissingWeightsError, match="does not exist"):
        vgg.find_weights(str(tmp_path / "absent.h5"))


def test_vgg_losses_on_random_weights():
    model = vgg.build_vgg(None)
    rng = np.random.default_rng(2)
    a = tf.constant(rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32))
    b = tf.constant(rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32))
    fa, fb = vgg.features(model, a), vgg.features(model, b)
    assert [f.shape[1] for f in fa] == [32, 16, 8, 4, 2]
    assert vgg.feature_matching(fa, fa).numpy() == pytest.approx([0.0])
    assert vgg.feature_matching(fa, fb).numpy()[0] > 0
    assert vgg.perceptual(fa, fb).numpy()[0] > 0
    assert np.all(np.isfinite(contextual.contextual_vgg(fa, fb).numpy()))


# ----------------------------------------------------------------------------- flow supervision

FACTORS = [8, 4, 2]  # a 64 x 64 image: 8 x 8 dense, 16 x 16 and 32 x 32 PatchMatch


def shifted_flow(batch=2, size=64, shift=(8.0, -16.0)):
    """Every pixel comes from `shift` away: at every level a shift by a whole number of
    level pixels, the same for every pixel of a level pixel."""
    from cocosnet_tf.data.geometry import xy_grid

    flow = np.broadcast_to(xy_grid(size, size) + shift, (batch, size, size, 2)).astype(np.float32)
    return tf.constant(flow), tf.ones([batch, size, size, 1])


def level_truth(flow, factor):
    """The true positions of a level's pixels for a flow that moves each block as one."""
    return correspondence.level_targets(flow, factor)[:, ::factor, ::factor]


def candidates_at(positions):
    """One sure candidate per pixel: (positions [B, h, w, 1, 2], weights [B, h, w, 1])."""
    return positions[..., None, :], tf.ones_like(positions[..., :1])


def outputs_at(flow, error=0.0, iterations=2):
    """A correspondence output whose dense attention is sure of the true coarse position and
    whose PatchMatch trajectories hold one candidate, the true flow plus `error` (level
    pixels, along x)."""
    true0 = level_truth(flow, FACTORS[0])
    b, h, w = true0.shape[:3]
    x = tf.clip_by_value(tf.round(true0[..., 0]), 0, w - 1)
    y = tf.clip_by_value(tf.round(true0[..., 1]), 0, h - 1)
    index = tf.reshape(tf.cast(y * w + x, tf.int32), [b, h * w])
    log_attention = tf.nn.log_softmax(1e3 * tf.one_hot(index, h * w), axis=-1)
    trajectories = [[candidates_at(level_truth(flow, f) + [error, 0.0]) for _ in range(iterations)]
                    for f in FACTORS[1:]]
    return {"dense_log_attention": log_attention, "trajectories": trajectories}


def test_flow_loss_is_zero_at_the_true_flow_and_grows_with_the_error():
    flow, mask = shifted_flow()
    losses = [correspondence.flow_supervision(outputs_at(flow, error), flow, mask, 0.8, FACTORS).numpy()
              for error in (0.0, 0.5, 2.0)]
    np.testing.assert_allclose(losses[0], 0.0, atol=1e-3)
    assert np.all(losses[0] < losses[1]) and np.all(losses[1] < losses[2])
    # two PatchMatch levels, two iterations weighted 0.8 and 1: the L1 error times 2 x 1.8
    np.testing.assert_allclose(losses[2], 2.0 * 2 * 1.8, rtol=1e-3)
    # the dense level: a uniform attention costs log(N) per pixel
    uniform = outputs_at(flow)
    uniform["dense_log_attention"] = tf.fill([2, 64, 64], -float(np.log(64.0)))
    np.testing.assert_allclose(correspondence.flow_supervision(uniform, flow, mask, 0.8, FACTORS).numpy(),
                               np.log(64.0), rtol=1e-4)


def test_flow_l1_charges_each_candidate_by_its_weight_so_hedging_does_not_pay():
    # two candidates 3 level pixels either side of the truth, weighted half each: their
    # mean is exact, but the loss is the expected error of the pick, 3 x (x only)
    flow, mask = shifted_flow()
    truth = level_truth(flow, 2)
    positions = tf.stack([truth + [3.0, 0.0], truth - [3.0, 0.0]], axis=-2)
    hedged = correspondence.flow_l1((positions, tf.fill(truth.shape[:3] + (2,), 0.5)), flow, mask, 2).numpy()
    np.testing.assert_allclose(hedged, 3.0, rtol=1e-5)
    sure = correspondence.flow_l1((positions[..., :1, :] - [3.0, 0.0], tf.ones(truth.shape[:3] + (1,))),
                                  flow, mask, 2).numpy()
    np.testing.assert_allclose(sure, 0.0, atol=1e-5)


def test_dense_cross_entropy_splits_a_level_pixel_between_the_places_its_pixels_go():
    flow, mask = shifted_flow(batch=1)
    # the right half of every block moves one more level pixel (8 px) to the right
    moved = flow.numpy().copy()
    moved[:, :, 4::8] += [8.0, 0.0]
    moved[:, :, 5::8] += [8.0, 0.0]
    moved[:, :, 6::8] += [8.0, 0.0]
    moved[:, :, 7::8] += [8.0, 0.0]
    moved = tf.constant(moved)
    true0 = level_truth(flow, 8)
    index = tf.reshape(tf.cast(tf.clip_by_value(tf.round(true0[..., 1]), 0, 7) * 8
                               + tf.clip_by_value(tf.round(true0[..., 0]), 0, 7), tf.int32), [1, 64])
    sure = tf.one_hot(index, 64) * 1e3
    half = tf.one_hot(index, 64) + tf.one_hot(tf.minimum(index + 1, index // 8 * 8 + 7), 64)
    costs = [correspondence.dense_cross_entropy(tf.nn.log_softmax(logits, -1), moved, mask, 8).numpy()
             for logits in (sure, 1e3 * half)]
    # sure of one place: half the pixels pay ~1e3; split between both: every pixel pays log 2,
    # except in the last two columns, where both halves go to the same (clamped) place
    assert costs[0][0] > 100
    assert costs[1][0] == pytest.approx(np.log(2.0) * 6 / 8, rel=1e-3)


def test_flow_loss_counts_only_pixels_whose_flow_is_known():
    flow, _ = shifted_flow()
    out = outputs_at(flow, error=1.0)
    # sample 1: no flow at all; sample 0: the left half unknown, and there the prediction is wrong
    mask = tf.concat([tf.concat([tf.zeros([1, 64, 32, 1]), tf.ones([1, 64, 32, 1])], axis=2),
                      tf.zeros([1, 64, 64, 1])], axis=0)
    wrong_left = [[(p + tf.constant([5.0, 5.0]) * tf.cast(tf.range(p.shape[2]) < p.shape[2] // 2, tf.float32)[
        None, None, :, None, None], w) for p, w in level] for level in out["trajectories"]]
    loss = correspondence.flow_supervision(out, flow, mask, 0.8, FACTORS).numpy()
    hidden = correspondence.flow_supervision({**out, "trajectories": wrong_left}, flow, mask, 0.8, FACTORS).numpy()
    np.testing.assert_allclose(hidden, loss, rtol=1e-6)
    assert loss[1] == 0.0 and loss[0] > 0
