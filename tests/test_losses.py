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
