"""DeepFashion(HD): official pose maps, padding, pair-list rule and errors, on a tiny
dataset written in the release's formats."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from cocosnet_tf.config import load_config
from cocosnet_tf.data.deepfashion import (DeepFashionSource, pad_to_square, pose_map, read_keypoints,
                                          square_photo)
from cocosnet_tf.data.kinds import POSE_CHANNELS
from cocosnet_tf.data.sources import SAMPLE_KEYS
from cocosnet_tf.fileio import DataError

# Photos (relative to the root): A and C are training targets; A has a same-person pair B.
A = "img/WOMEN/Dresses/id_00000001/01_1_front.jpg"  # original 750 x 1101 JPEG
B = "img/WOMEN/Dresses/id_00000001/01_2_side.png"  # already in the square pose frame
C = "img/WOMEN/Tees/id_00000002/02_1_front.png"  # small original-ratio PNG, no self pair
D = "img/WOMEN/Tees/id_00000003/03_1_front.png"  # square
COLOURS = {A: (200, 30, 30), B: (30, 200, 30), C: (30, 30, 200), D: (200, 200, 30)}
SIZES = {A: (750, 1101), B: (256, 256), C: (150, 220), D: (300, 300)}  # (w, h)

# Keypoints whose limbs are all absent (no listed limb joins two of them).
ISOLATED = {0: (100, 100), 2: (300, 150), 4: (500, 200), 7: (700, 260),
            10: (160, 700), 13: (420, 760), 16: (640, 820), 17: (880, 900)}
# The official colours of those keypoints, as listed (OpenCV draws them as BGR).
LISTED_COLOURS = {0: (255, 0, 0), 2: (255, 170, 0), 4: (170, 255, 0), 7: (0, 255, 85),
                  10: (0, 170, 255), 13: (85, 0, 255), 16: (255, 0, 170), 17: (255, 0, 85)}


def write_keypoints(root, key, points: dict[int, tuple[float, float]], extra_rows=()):
    """OpenPose-style files: candidate rows (x, y, score, id), one subset row of 20."""
    rows = [(x, y, 0.9, n) for n, (x, y) in enumerate(list(points.values()) + list(extra_rows))]
    subset = -np.ones(20)
    subset[list(points)] = np.arange(len(points))
    subset[18:] = (15.0, len(points))
    stem = os.path.join(root, os.path.splitext(key.replace("img/", "pose/", 1))[0])
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    np.savetxt(stem + "_candidate.txt", np.array(rows).reshape(-1, 4))
    np.savetxt(stem + "_subset.txt", subset[None])
    return stem + "_candidate.txt", stem + "_subset.txt"


@pytest.fixture()
def root(tmp_path):
    for key, (w, h) in SIZES.items():
        os.makedirs(os.path.dirname(tmp_path / key), exist_ok=True)
        Image.fromarray(np.full((h, w, 3), COLOURS[key], np.uint8)).save(tmp_path / key, quality=95)
        write_keypoints(tmp_path, key, ISOLATED)
    (tmp_path / "train.txt").write_text(f"{A}\n{C.replace('/', chr(92))}\n")
    (tmp_path / "val.txt").write_text(f"{A}\n")
    bs = lambda p: p.replace("/", "\\")  # the released lists use Windows separators
    (tmp_path / "deepfashion_self_pair.txt").write_text(f"{bs(A)},{bs(B)},{bs(D)}\n")
    (tmp_path / "deepfashion_ref.txt").write_text(f"{bs(A)},{bs(D)},{bs(C)}\n{bs(C)},{bs(A)},{bs(B)},{bs(D)}\n")
    (tmp_path / "deepfashion_ref_test.txt").write_text(f"{bs(A)},{bs(D)},{bs(B)}\n")
    return tmp_path


def make_source(root, *sets, crop="[128,96]"):
    config = load_config(None, ["data.dataset=deepfashion", f"data.root={root}", f"data.crop_size={crop}",
                                "data.exemplar.mode=pair_list", *sets])
    return DeepFashionSource(config.data)


# ----------------------------------------------------------------------------- pose map


def test_keypoints_drawn_in_their_colour_and_missing_ones_not_at_all(tmp_path):
    # Rows 8 and 9 of the candidate file are detections no keypoint refers to.
    unused = [(820, 120), (300, 520)]
    paths = write_keypoints(tmp_path, "img/x.jpg", ISOLATED, extra_rows=unused)
    pose = pose_map(read_keypoints(*paths), 128, 128)
    assert pose.shape == (128, 128, POSE_CHANNELS) and pose.dtype == np.float32
    assert 0.0 <= pose.min() and pose.max() <= 1.0
    for i, (x, y) in ISOLATED.items():
        rgb = np.array(LISTED_COLOURS[i][::-1]) / 255.0  # BGR as drawn -> RGB
        np.testing.assert_allclose(pose[y // 8, x // 8, :3], rgb)
    for x, y in unused:
        assert not pose[y // 8 - 3: y // 8 + 4, x // 8 - 3: x // 8 + 4, :3].any()
    # Circles only: 8 discs of radius 20 px in 1024 -> about pi * 2.5^2 pixels each at 128.
    assert 8 * 10 < np.count_nonzero(pose[..., :3].any(-1)) < 8 * 30


def test_missing_limb_is_the_official_all_ones_map():
    # Official: distance transform of 255 - (all-zero mask); OpenCV fills it with FLT_MAX.
    official = np.clip(cv2.distanceTransform(np.full((64, 64), 255, np.uint8), cv2.DIST_L1, 3) / 3, 0, 255)
    assert (official.astype(np.uint8) == 255).all()
    keypoints = np.full((18, 2), np.nan)
    for i, xy in ISOLATED.items():
        keypoints[i] = xy
    np.testing.assert_array_equal(pose_map(keypoints, 128, 128)[..., 3:], 1.0)


def test_limb_map_is_zero_on_the_limb_and_grows_along_its_normal():
    keypoints = np.full((18, 2), np.nan)
    keypoints[1], keypoints[2] = (512, 400), (704, 400)  # neck, right shoulder: limb 0, horizontal
    pose = pose_map(keypoints, 128, 128)
    limb = pose[..., 3]
    row, col = 400 // 8, 608 // 8  # the midpoint at 1/8 scale
    assert limb[row, col] == 0.0
    below = limb[row:row + 40, col]
    assert (np.diff(below) >= 0).all() and (np.diff(below[4:]) > 0).all()
    # L1 distance to the ellipse edge (20 px below the axis) / 3, of 255.
    expected = ((row + 39) * 8 + 4 - 400 - 20) / 3 / 255
    assert abs(below[-1] - expected) < 0.01
    np.testing.assert_array_equal(pose[..., 4:], 1.0)  # every other limb is missing
    # Skeleton at the midpoint: 0.6 of the limb colour blended over black, in RGB.
    np.testing.assert_allclose(pose[row, col, :3], np.array([0, 0, 153]) / 255.0)


# ----------------------------------------------------------------------------- padding


def test_original_photo_padded_like_the_official_preprocessing():
    photo = np.zeros((1101, 750, 3), np.uint8)
    padded = pad_to_square(photo)
    assert padded.shape == (1101, 1101, 3)
    assert (padded[:, :175] == 232).all() and (padded[:, 175:925] == 0).all() and (padded[:, 925:] == 232).all()
    wide = pad_to_square(np.zeros((10, 13, 3), np.uint8))  # rows added: 1 on top, 2 below
    assert (wide[:1] == 232).all() and (wide[1:11] == 0).all() and (wide[11:] == 232).all()
    square = square_photo(photo)
    assert square.shape == (1024, 1024, 3)
    # 175 and 176 padded columns are 162.8 and 163.7 columns at 1024; edges blend.
    assert (square[:, :162] == 232).all() and (square[:, 164:859] == 0).all() and (square[:, 861:] == 232).all()
    assert 0 < square[0, 162, 0] < 232 and 0 < square[0, 860, 0] < 232


# ----------------------------------------------------------------------------- samples


def expected_photo(root, key, height, width):
    """An independent read of a square photo: PIL bicubic to the load size, in [-1, 1]."""
    img = Image.open(root / key).convert("RGB").resize((width, height), Image.BICUBIC)
    return np.asarray(img).astype(np.float32) / 127.5 - 1.0


def test_training_samples_use_the_self_pair_else_the_last_reference(root):
    source = make_source(root, "data.deepfashion.image_list=train.txt")
    assert len(source) == 2 and source.keys == [A, C]
    sample = source.load(0, seed=0)
    assert set(sample) == set(SAMPLE_KEYS)
    assert sample["label"].shape == sample["exemplar_label"].shape == (128, 96, POSE_CHANNELS)
    assert sample["image"].shape == sample["exemplar"].shape == (128, 96, 3)
    np.testing.assert_allclose(sample["exemplar"], expected_photo(root, B, 128, 96), atol=1e-6)
    # The target A was padded with grey 232 on both sides and stretched to 96 columns.
    assert np.allclose(sample["image"][:, :10], 232 / 127.5 - 1, atol=0.02)
    assert np.allclose(sample["image"][:, -10:], 232 / 127.5 - 1, atol=0.02)
    assert np.allclose(sample["image"][64, 48], np.array(COLOURS[A]) / 127.5 - 1, atol=0.05)
    np.testing.assert_array_equal(sample["exemplar_label"], source.read(B)[1])
    assert sample["self_ref"] == 1.0 and sample["has_flow"] == 0.0 and not sample["flow"].any()
    other = source.load(1, seed=0)  # C has no self pair: the last entry of deepfashion_ref.txt
    np.testing.assert_allclose(other["exemplar"], expected_photo(root, D, 128, 96), atol=1e-6)
    assert other["self_ref"] == 1.0


def test_a_user_pair_list_is_not_taken_for_same_person_pairs(root):
    (root / "retrieved.txt").write_text(f"{A},{D}\n{C},{A}\n")
    source = make_source(root, "data.deepfashion.image_list=train.txt", "data.exemplar.pair_list=retrieved.txt")
    sample = source.load(0, seed=0)
    np.testing.assert_allclose(sample["exemplar"], expected_photo(root, D, 128, 96), atol=1e-6)
    assert sample["self_ref"] == 0.0  # warp-self must not pull towards another person


def test_test_samples_use_the_first_test_reference(root):
    source = make_source(root, "data.phase=test", "data.deepfashion.image_list=val.txt", crop=128)
    sample = source.load(0, seed=0)
    np.testing.assert_allclose(sample["exemplar"], expected_photo(root, D, 128, 128), atol=1e-6)
    assert sample["self_ref"] == 0.0 and sample["has_flow"] == 0.0


def test_pseudo_mode_and_default_image_list(root):
    os.makedirs(root / "img/MEN/no_pose")
    Image.new("RGB", (64, 64)).save(root / "img/MEN/no_pose/x.jpg")  # no keypoints: not a target
    source = make_source(root, "data.exemplar.mode=pseudo")
    assert sorted(source.keys) == sorted([A, B, C, D])
    sample = source.load(0, seed=3)
    assert sample["has_flow"] == 1.0 and sample["self_ref"] == 1.0


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("which, text, message", [
    ("candidate", "100 200 0.9\n", "4 columns"),
    ("candidate", "100 200 0.9 0\nabc 1 2 3\n", "rows of numbers"),
    ("candidate", "100 nan 0.9 0\n", "non-finite"),
    ("subset", " ".join(["0"] * 15) + "\n", "20 numbers"),
    ("subset", " ".join(["0", "7"] + ["-1"] * 18) + "\n", "keypoint indices"),
])
def test_malformed_keypoint_files_name_the_file(tmp_path, which, text, message):
    paths = dict(zip(("candidate", "subset"), write_keypoints(tmp_path, "img/x.jpg", {0: (1, 2), 1: (3, 4)})))
    with open(paths[which], "w") as f:
        f.write(text)
    with pytest.raises(DataError, match=message) as err:
        read_keypoints(paths["candidate"], paths["subset"])
    assert paths[which] in str(err.value)


def test_missing_pose_file_names_it(root):
    source = make_source(root, "data.deepfashion.image_list=train.txt")
    missing = root / "pose/WOMEN/Dresses/id_00000001/01_2_side_subset.txt"
    os.remove(missing)
    with pytest.raises(DataError, match="does not exist") as err:
        source.load(0, seed=0)  # the exemplar B has lost its subset file
    assert str(missing) in str(err.value)


def test_lists_naming_absent_files_name_the_list(root):
    (root / "deepfashion_ref.txt").write_text(f"{A},img/WOMEN/gone.jpg\n{C},{D}\n")
    with pytest.raises(DataError, match="deepfashion_ref.txt"):
        make_source(root, "data.deepfashion.image_list=train.txt")
    (root / "train.txt").write_text(f"{A}\nimg/WOMEN/also_gone.jpg\n")
    with pytest.raises(DataError, match="train.txt.*also_gone"):
        make_source(root, "data.deepfashion.image_list=train.txt")


def test_target_without_any_pair_line_is_an_error(root):
    (root / "deepfashion_ref.txt").write_text(f"{A},{D}\n")  # C is in neither list
    with pytest.raises(DataError, match="deepfashion_ref.txt.*no line"):
        make_source(root, "data.deepfashion.image_list=train.txt")
