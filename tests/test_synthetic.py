import colorsys

import numpy as np
import pytest

from cocosnet_tf.data import synthetic
from cocosnet_tf.data.geometry import SmoothWarp, inside, xy_grid, sample_bilinear, sample_nearest


def smooth_pair(seed, index, *size, **kwargs):
    """A pair of the `smooth` motion model (one gentle warp of the whole scene)."""
    return synthetic.make_pair(seed, index, *size, motion="smooth", min_objects=4, max_objects=9, **kwargs)


def flow_reproduction(pair):
    """Fraction of in-bounds pixels whose colour (and class) the flow reproduces."""
    h, w = pair.image.shape[:2]
    valid = inside(pair.flow, h, w)
    colour_err = np.abs(sample_bilinear(pair.exemplar, pair.flow) - pair.image).max(-1)[valid]
    same_class = (sample_nearest(pair.exemplar_classes, pair.flow) == pair.classes)[valid]
    return valid.mean(), np.mean(colour_err < 0.03), np.median(colour_err), same_class.mean()


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (96, 160), (256, 192)])
def test_flow_is_the_true_correspondence(size):
    for index in range(3):
        pair = smooth_pair(7, index, *size)
        covered, close, median, same_class = flow_reproduction(pair)
        assert covered > 0.6
        assert median < 5e-3
        # the rest: object edges and fine texture, where bilinear sampling blends
        # (a larger share of the pixels at 64 px than at 128 px and above)
        assert close > (0.85 if min(size) < 96 else 0.92)
        assert same_class > (0.95 if min(size) < 96 else 0.97)


def test_wrong_flow_does_not_reproduce():
    # the check above is only meaningful if a wrong flow fails it
    pair = smooth_pair(7, 0, 128, 128)
    h, w = pair.image.shape[:2]
    identity = synthetic.SyntheticPair(pair.image, pair.classes, pair.instances, pair.exemplar,
                                       pair.exemplar_classes, pair.exemplar_instances, True,
                                       xy_grid(h, w).astype(np.float32), pair.flow_mask)
    assert flow_reproduction(identity)[1] < 0.8


def test_exemplar_differs_from_image():
    pair = smooth_pair(3, 1, 128, 128)
    assert np.abs(pair.exemplar - pair.image).mean() > 0.02
    displacement = np.hypot(*(pair.flow - xy_grid(128, 128)).transpose(2, 0, 1))
    assert displacement.mean() > 2.0  # pixels


def test_warp_inverse_is_exact():
    rng = np.random.default_rng(0)
    for strength in (0.5, 1.0, 2.0):
        warp = SmoothWarp.random(rng, 100, 140, strength)
        points = rng.uniform(-20, 160, size=(500, 2))
        assert np.abs(warp.forward(warp.inverse(points)) - points).max() < 1e-8
        assert np.abs(warp.inverse(warp.forward(points)) - points).max() < 1e-8


def test_zero_strength_is_identity():
    warp = SmoothWarp.random(np.random.default_rng(1), 64, 80, 0.0)
    assert np.abs(warp.flow() - xy_grid(64, 80)).max() < 1e-9


def test_deterministic_per_seed_and_resolution_independent_layout():
    a = synthetic.make_pair(5, 11, 96, 128)
    b = synthetic.make_pair(5, 11, 96, 128)
    for field in ("image", "classes", "exemplar", "exemplar_classes", "flow", "flow_mask"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = synthetic.make_pair(6, 11, 96, 128)
    assert not np.array_equal(a.image, c.image)
    # the same scene at twice the size: class fractions agree
    big = synthetic.make_pair(5, 11, 192, 256)
    small_hist = np.bincount(a.classes.ravel(), minlength=8) / a.classes.size
    big_hist = np.bincount(big.classes.ravel(), minlength=8) / big.classes.size
    assert np.abs(small_hist - big_hist).max() < 0.02


# ----------------------------------------------------------------------------- the objects motion


def object_pairs(size, count=6, seed=7, **kwargs):
    pairs = [synthetic.make_pair(seed, index, *size, **kwargs) for index in range(count)]
    return [p for p in pairs if p.self_ref]


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (96, 160)])
def test_object_motion_flow_reproduces_the_target_wherever_it_is_valid(size):
    for pair in object_pairs(size):
        valid = pair.flow_mask
        assert valid.mean() > 0.3
        colour_err = np.abs(sample_bilinear(pair.exemplar, pair.flow) - pair.image).max(-1)[valid]
        assert np.median(colour_err) < 5e-3
        # the rest: object edges and fine texture, where bilinear sampling blends
        assert np.mean(colour_err < 0.03) > (0.8 if min(size) < 96 else 0.9)
        same_object = (sample_nearest(pair.exemplar_instances, pair.flow) == pair.instances)[valid]
        assert same_object.mean() > 0.95


def test_object_motion_masks_occluded_and_outside_pixels():
    occluded = 0
    for pair in object_pairs((128, 128), count=10):
        h, w = pair.image.shape[:2]
        in_frame = inside(pair.flow, h, w)
        assert not (pair.flow_mask & ~in_frame).any()  # outside the exemplar: never valid
        hidden = in_frame & ~pair.flow_mask
        # where the mask says occluded, the exemplar shows another object (or the background) there
        other = sample_nearest(pair.exemplar_instances, pair.flow) != pair.instances
        assert other[hidden].mean() > 0.9
        occluded += hidden.sum()
    assert occluded > 0.02 * 10 * 128 * 128  # the motion does occlude


def test_object_motion_moves_objects_far_and_independently():
    side = 64
    for pair in object_pairs((side, side), count=8):
        displacement = pair.flow - xy_grid(side, side)
        assert np.hypot(*displacement[pair.flow_mask].T).mean() > 0.08 * side
        means = [displacement[(pair.instances == i) & pair.flow_mask].mean(0)
                 for i in np.unique(pair.instances) if ((pair.instances == i) & pair.flow_mask).sum() > 20]
        spread = max(np.hypot(*(a - b)) for a in means for b in means)
        assert spread > 0.1 * side  # not one global motion
        classes = [c for c in np.unique(pair.classes) if c > 0]
        assert len(classes) == len(np.unique(pair.instances)) - 1  # one object per class


def test_object_motion_is_stronger_with_strength_and_zero_strength_is_the_identity():
    side = 64
    mean = {}
    for strength in (0.0, 1.0, 1.5):
        pairs = object_pairs((side, side), count=8, warp_strength=strength)
        mean[strength] = np.mean([np.hypot(*(p.flow - xy_grid(side, side))[p.flow_mask].T).mean() for p in pairs])
        if strength == 0.0:
            for p in pairs:
                np.testing.assert_allclose(p.exemplar, p.image, atol=1e-5)
    assert mean[0.0] < 1e-6 < mean[1.0] < mean[1.5]


def test_cross_scene_pairs_have_no_flow():
    pairs = [synthetic.make_pair(2, i, 64, 64, cross_scene_probability=1.0) for i in range(3)]
    assert all(not p.self_ref and p.flow is None and p.flow_mask is None for p in pairs)


@pytest.mark.parametrize("size", [(63, 64), (64, 1025), (2000, 100)])
def test_size_limits(size):
    with pytest.raises(ValueError, match="outside 64..1024"):
        synthetic.make_pair(0, 0, *size)


def test_extreme_sizes():
    small = synthetic.make_pair(0, 0, 64, 64)
    assert small.image.shape == (64, 64, 3) and small.flow.shape == (64, 64, 2)
    large = smooth_pair(0, 0, 1024, 576)
    assert large.image.shape == (1024, 576, 3)
    assert flow_reproduction(large)[1] > 0.95


def test_classes_have_their_own_palettes_and_textures():
    hues = {c: [] for c in range(1, synthetic.NUM_CLASSES)}
    textured = {c: [] for c in range(1, synthetic.NUM_CLASSES)}
    for index in range(12):
        pair = synthetic.make_pair(1, index, 128, 128)
        for c in np.unique(pair.classes):
            if c == 0:
                continue
            pixels = pair.image[pair.classes == c]
            if len(pixels) < 50:
                continue
            bright = pixels[pixels.max(-1) > 0.6]  # the light palette colour carries the hue
            if len(bright):
                hues[c].append(colorsys.rgb_to_hsv(*np.median(bright, axis=0))[0])
            textured[c].append(pixels.std(axis=0).mean())
    present = [c for c in hues if hues[c]]
    assert len(present) >= 6
    centres = {c: np.angle(np.mean(np.exp(2j * np.pi * np.array(hues[c])))) / (2 * np.pi) % 1 for c in present}
    for a in present:
        for b in present:
            if a < b:
                gap = abs(centres[a] - centres[b])
                assert min(gap, 1 - gap) > 0.05, (a, b)  # distinct hue per class
    for c in present:
        assert np.median(textured[c]) > 0.05  # a texture, not a flat colour


def test_cross_scene_exemplar():
    pair = smooth_pair(2, 4, 128, 128, cross_scene_probability=1.0)
    assert not pair.self_ref and pair.flow is None
    assert not np.array_equal(pair.image, pair.exemplar)
    same = smooth_pair(2, 4, 128, 128)
    # another layout of the same object classes
    assert np.abs(pair.exemplar - same.exemplar).mean() > 0.05
    assert set(np.unique(pair.exemplar_instances)) - {0} <= set(range(1, 33))
    objects_a = synthetic.random_scene(np.random.default_rng([2, 4]), 1.0, 4, 9)
    assert sorted(set(np.unique(pair.exemplar_classes)) - {0}) <= sorted({o.cls for o in objects_a.objects})
