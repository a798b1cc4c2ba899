"""Every metric of cocosnet_tf.metrics (and FID's features) on inputs with known answers."""

import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf import fid_inception, metrics
from cocosnet_tf.config import ConfigError
from cocosnet_tf.data.geometry import xy_grid


def smooth_images(seed, count=4, size=64):
    """Random low-frequency colour images in [-1, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, (count, size // 8, size // 8, 3))
    return np.clip(coarse.repeat(8, 1).repeat(8, 2) + rng.normal(0, 0.05, (count, size, size, 3)), -1, 1)


# ----------------------------------------------------------------------------- correspondence


def test_a_known_shift_gives_its_endpoint_error_and_pck():
    flow = (xy_grid(16, 16) + [3.0, 4.0])[None].astype(np.float32)  # every pixel comes from 3 right, 4 down
    known = np.ones((1, 16, 16, 1), np.float32)
    mask = metrics.valid_flow_mask({"flow": flow, "flow_mask": known, "has_flow": np.ones(1)})
    assert mask.sum() == 13 * 12  # x + 3 <= 15 and y + 4 <= 15: the rest leaves the exemplar
    stats = metrics.EndpointStats((1.0, 3.0, 5.0))
    stats.add(metrics.endpoint_errors(metrics.identity_positions(1, 16, 16), flow, mask))
    assert stats.count == 156 and stats.mean() == pytest.approx(5.0)
    assert stats.pck() == {"1": 0.0, "3": 0.0, "5": 1.0}
    # a pair without flow counts nowhere, nor do pixels whose flow is unknown (occluded)
    assert not metrics.valid_flow_mask({"flow": flow, "flow_mask": known, "has_flow": np.zeros(1)}).any()
    known[0, :4] = 0
    assert metrics.valid_flow_mask({"flow": flow, "flow_mask": known, "has_flow": np.ones(1)}).sum() == 13 * 8


def test_a_shift_at_a_coarser_level_is_the_shift_over_the_factor():
    flow = (xy_grid(32, 32) + [8.0, -4.0])[None]
    level, mask = metrics.flow_at_level(flow, np.ones((1, 32, 32), bool), 4)
    assert level.shape == (1, 8, 8, 2) and mask.all()
    np.testing.assert_allclose(level - xy_grid(8, 8), np.broadcast_to([2.0, -1.0], (1, 8, 8, 2)))
    # the columns from 18 on move 6 pixels further: the blocks of columns 16-19 have no one flow
    flow[:, :, 18:] += [6.0, 0.0]
    level, mask = metrics.flow_at_level(flow, np.ones((1, 32, 32), bool), 4)
    assert not mask[0, :, 4].any() and mask[0, :, :4].all() and mask[0, :, 5:].all()


def test_upsampled_positions_keep_a_translation_exact_and_identity_identical():
    coarse = (xy_grid(4, 4) + [1.0, -0.5])[None]
    fine = metrics.upsampled_positions(coarse, 4)
    np.testing.assert_allclose(fine, (xy_grid(16, 16) + [4.0, -2.0])[None])
    np.testing.assert_array_equal(metrics.upsampled_positions(xy_grid(4, 4)[None], 2), xy_grid(8, 8)[None])


# ----------------------------------------------------------------------------- image quality


def test_identical_images_give_capped_psnr_ssim_one_and_l1_zero():
    images = smooth_images(0)
    assert np.all(metrics.psnr(images, images) == pytest.approx(120.0))
    np.testing.assert_allclose(metrics.ssim(images, images), 1.0, atol=1e-12)
    assert np.all(metrics.l1(images, images) == 0.0)


def test_a_constant_offset_gives_its_psnr_and_l1():
    images = smooth_images(1) * 0.5
    shifted = images + 0.1  # 0.05 in [0, 1] units: MSE 0.0025
    np.testing.assert_allclose(metrics.psnr(images, shifted), 10 * np.log10(1 / 0.0025), rtol=1e-6)
    np.testing.assert_allclose(metrics.l1(images, shifted), 0.05, rtol=1e-6)


def test_ssim_equals_tensorflows_definition():
    a = smooth_images(2, count=3, size=32)
    b = np.clip(a + np.random.default_rng(3).normal(0, 0.2, a.shape), -1, 1)
    expected = tf.image.ssim(tf.constant((a + 1) / 2), tf.constant((b + 1) / 2), max_val=1.0).numpy()
    np.testing.assert_allclose(metrics.ssim(a, b), expected, atol=1e-6)
    assert np.all(metrics.ssim(a, b) < 0.9)
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ssim(a[:, :10, :10], b[:, :10, :10])


def test_quantise_rounds_to_png_levels():
    image = np.array([-1.0, -0.999, 0.0, 0.5, 1.0])
    q = metrics.quantise(image)
    np.testing.assert_allclose((q + 1) * 127.5, [0, 0, 128, 191, 255], atol=1e-4)
    np.testing.assert_array_equal(metrics.quantise(q), q)


# ----------------------------------------------------------------------------- SWD


def test_laplacian_pyramid_levels_and_exact_reconstruction():
    assert metrics.pyramid_levels(128, 128, 16) == 4
    assert metrics.pyramid_levels(64, 96, 16) == 3
    assert metrics.pyramid_levels(64, 64, 64) == 1
    images = smooth_images(4, count=2)
    pyramid = metrics.laplacian_pyramid(images, 3)
    assert [p.shape[1] for p in pyramid] == [64, 32, 16]
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        rebuilt = band + metrics.pyramid_up(rebuilt)
    np.testing.assert_allclose(rebuilt, images, atol=1e-12)
    # a flat image has no detail: every band-pass level is zero, the residual keeps the value
    flat = metrics.laplacian_pyramid(np.full((1, 32, 32, 3), 0.25), 3)
    assert all(np.abs(band).max() < 1e-12 for band in flat[:-1])
    np.testing.assert_allclose(flat[-1], 0.25)


def test_sliced_wasserstein_of_a_1d_shift_is_the_shift():
    a = np.random.default_rng(5).normal(size=(500, 1))
    rng = np.random.default_rng(0)
    assert metrics.sliced_wasserstein(a, a + 0.5, rng, directions=8) == pytest.approx(0.5)
    assert metrics.sliced_wasserstein(a, a[::-1].copy(), rng, directions=8) == 0.0  # order does not matter


def test_swd_of_a_set_against_itself_is_zero_and_grows_with_difference():
    settings = dict(seed=0, patches=64, directions=128, min_resolution=16)
    smooth = smooth_images(6, count=8)
    similar = np.clip(smooth + np.random.default_rng(7).normal(0, 0.05, smooth.shape), -1, 1)
    noise = np.random.default_rng(8).uniform(-1, 1, smooth.shape)
    itself = metrics.swd(smooth, smooth, **settings)
    assert len(itself) == 3 and itself == [0.0, 0.0, 0.0]
    near, far = np.mean(metrics.swd(smooth, similar, **settings)), np.mean(metrics.swd(smooth, noise, **settings))
    assert 0 < near < far / 3
    # per level and channel normalisation: a global gain and offset of each channel is invisible
    recoloured = smooth * [0.5, 0.8, 0.3] + [0.2, -0.1, 0.0]
    assert max(metrics.swd(smooth, recoloured, **settings)) < 1e-6
    assert metrics.swd(smooth, noise, **settings) == metrics.swd(smooth, noise, **settings)  # seeded


# ----------------------------------------------------------------------------- Fréchet distance and FID


def test_frechet_distance_of_an_image_set_against_itself_is_zero():
    features = np.random.default_rng(9).normal(size=(50, 8)) @ np.random.default_rng(10).normal(size=(8, 8))
    mu, cov = metrics.gaussian_statistics(features)
    assert abs(metrics.frechet_distance(mu, cov, mu, cov)) < 1e-9 * np.trace(cov)
    np.testing.assert_allclose(cov, np.cov(features.T))
    # images as features (8 x 8 thumbnails, 192 values): 6 samples give a singular covariance,
    # where a naive matrix square root leaves complex or negative residue
    thumbnails = metrics.block_mean(smooth_images(16, count=6), 8).reshape(6, -1)
    mu, cov = metrics.gaussian_statistics(thumbnails)
    assert abs(metrics.frechet_distance(mu, cov, mu, cov)) < 1e-6 * np.trace(cov)
    other = metrics.gaussian_statistics(metrics.block_mean(smooth_images(17, count=6), 8).reshape(6, -1))
    assert metrics.frechet_distance(mu, cov, *other) > 0.1 * np.trace(cov)


def test_frechet_distance_of_known_gaussians_is_its_closed_form():
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    assert metrics.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[1.0]])) == \
        pytest.approx(9.0 + 1.0)
    # independent dimensions: the sum of the one-dimensional distances
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)
    # full and singular covariances (fewer samples than dimensions): scipy's matrix square root
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(11)
    for samples in (40, 5):
        (m1, c1), (m2, c2) = (metrics.gaussian_statistics(rng.normal(size=(samples, 10)) * rng.uniform(0.5, 2, 10))
                              for _ in range(2))
        root = scipy_linalg.sqrtm(c1 @ c2).real
        expected = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * root)
        assert metrics.frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_fid_features_come_from_a_weights_file(tmp_path):
    # random weights saved to a file stand in for the converted file: the loading path is the same
    saved = fid_inception.build(None)
    saved.save_weights(tmp_path / "inception.weights.h5")
    network = fid_inception.build(tmp_path / "inception.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(saved.get_weights(), network.get_weights()))
    images = ((smooth_images(12, count=3) + 1) * 127.5).astype(np.uint8)
    features = fid_inception.pool_features(network, images, batch_size=2)
    assert features.shape == (3, 2048) and features.dtype == np.float64 and features.std(axis=0).max() > 0


def test_inception_weights_are_found_or_reported_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("COCOSNET_TF_WEIGHTS", str(tmp_path / "cache"))
    weights, reason = fid_inception.find_weights("")
    assert weights is None and "cocosnet_tf.weights fetch inception" in reason
    cached = tmp_path / "cache" / "inception.weights.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert fid_inception.find_weights("") == (cached, "")
    with pytest.raises(ConfigError, match="evaluate.inception_weights: .*nope.h5 does not exist"):
        fid_inception.find_weights(str(tmp_path / "nope.h5"))


# ----------------------------------------------------------------------------- colour faithfulness


def test_a_known_colour_shift_gives_its_histogram_distance():
    rng = np.random.default_rng(14)
    pixels = rng.integers(0, 200, (500, 3)).astype(np.uint8)
    assert metrics.colour_distance(pixels, pixels) == 0.0
    assert metrics.colour_distance(pixels, pixels + np.uint8(20)) == pytest.approx(20 / 255)
    red_only = pixels + np.array([30, 0, 0], np.uint8)
    assert metrics.colour_distance(pixels, red_only) == pytest.approx(30 / 255 / 3)
    # the order of the pixels and their number do not matter: only the histograms
    assert metrics.colour_distance(pixels, np.concatenate([pixels[::-1], pixels])) == pytest.approx(0.0)


def test_class_colour_distances_compare_each_class_with_itself():
    rng = np.random.default_rng(15)
    image = rng.integers(0, 200, (16, 16, 3)).astype(np.uint8)
    classes = np.zeros((16, 16), np.int64)
    classes[:, 8:] = 1
    classes[0, 5] = 2  # too few pixels
    classes[1, 5] = classes[2, 5] = -1  # no class
    exemplar = image.copy()
    exemplar[classes == 1] += np.uint8(10)  # class 1 recoloured in the exemplar
    exemplar_classes = classes.copy()
    exemplar_classes[:, :2] = 3  # a class only the exemplar has
    found = metrics.class_colour_distances(image, classes, exemplar, exemplar_classes, min_pixels=4)
    assert sorted(found) == [0, 1]
    assert found[1] == pytest.approx(10 / 255)
    assert found[0] < 0.05  # the same pixels, less the two columns that became class 3
