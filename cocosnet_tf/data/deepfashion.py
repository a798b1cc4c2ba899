"""DeepFashion(HD) as released with CoCosNet v2: photos under img/, OpenPose keypoints
under pose/, the train/val image lists and the exemplar pair lists.

The semantic input is the official 20-channel pose map, an RGB skeleton followed by 17
limb distance maps. It is drawn in the 1024 x 1024 frame the keypoints were detected
in (the photos padded to a square and resized) and then resized to the load size.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from cocosnet_tf.data.exemplars import normalise_key, read_pair_list
from cocosnet_tf.data.folders import FolderSource, resize_image
from cocosnet_tf.fileio import DataError, list_images, read_rgb

if TYPE_CHECKING:  # the configuration imports the data kinds, which import this module
    from cocosnet_tf.config import DataConfig

POSE_FRAME = 1024  # side of the square frame the released keypoints are in
PAD_VALUE = 232  # the studio-background grey the official preprocessing pads with
KEYPOINTS = 18
KEYPOINT_SUFFIXES = ("_candidate.txt", "_subset.txt")  # OpenPose's two files of one photo
SUBSET_LENGTH = 20  # OpenPose subset row: 18 candidate indices, total score, part count
CIRCLE_RADIUS = 20
STICK_WIDTH = 20  # minor semi-axis of the limb ellipses

# The official limbs as pairs of 1-based keypoint numbers (OpenPose COCO order).
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
         (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
# One colour per keypoint (and per limb), in the channel order OpenCV draws with (BGR):
# the official code lists them like RGB but converts the finished canvas BGR -> RGB.
COLOURS_BGR = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
               (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
               (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
               (255, 0, 255), (255, 0, 170), (255, 0, 85))


# ----------------------------------------------------------------------------- photos


def pad_to_square(photo: np.ndarray) -> np.ndarray:
    """Pad the shorter side with PAD_VALUE; an odd extra pixel goes right / bottom."""
    h, w = photo.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return np.pad(photo, ((top, side - h - top), (left, side - w - left), (0, 0)), constant_values=PAD_VALUE)


def square_photo(photo: np.ndarray) -> np.ndarray:
    """An original (750 x 1101) photo -> the 1024 x 1024 frame of the keypoints."""
    padded = pad_to_square(photo)
    # The official script resizes with scikit-image (order 1, anti-aliased); PIL's
    # bilinear filter widens with the scale in the same way.
    return np.asarray(Image.fromarray(padded).resize((POSE_FRAME, POSE_FRAME), Image.BILINEAR))


# ----------------------------------------------------------------------------- keypoints


def pose_paths(root: str, key: str) -> tuple[str, str]:
    """img/.../name.jpg -> (pose/.../name_candidate.txt, pose/.../name_subset.txt)."""
    parts = key.split("/")
    if "img" not in parts:
        raise DataError(f"{os.path.join(root, key)}: expected a photo under an 'img' folder "
                        f"(its keypoints are looked up under 'pose')")
    parts[parts.index("img")] = "pose"
    stem = os.path.join(root, *parts)
    stem = os.path.splitext(stem)[0]
    return stem + KEYPOINT_SUFFIXES[0], stem + KEYPOINT_SUFFIXES[1]


def keypoint_stem(path: str) -> str | None:
    """NAME of NAME_candidate.txt or NAME_subset.txt; None for other files."""
    for suffix in KEYPOINT_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return None


def _read_table(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError(f"{path}: keypoint file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file (nobody detected) is allowed
            table = np.loadtxt(path, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: expected rows of numbers written by np.savetxt ({err})") from err
    if not np.isfinite(table).all():
        raise DataError(f"{path}: contains non-finite values (nan or inf)")
    return table


def read_keypoints(candidate_path: str, subset_path: str) -> np.ndarray:
    """The 18 keypoints (x, y) in the 1024 frame, float64 [18, 2]; NaN where missing."""
    candidate = _read_table(candidate_path)
    if candidate.size == 0:
        candidate = np.zeros((0, 4))
    if candidate.shape[1] != 4:
        raise DataError(f"{candidate_path}: expected 4 columns (x, y, score, id), got {candidate.shape[1]}")
    subset = _read_table(subset_path)
    if subset.size != SUBSET_LENGTH or 1 not in subset.shape:  # one row (or one column) of 20
        raise DataError(f"{subset_path}: expected one row of {SUBSET_LENGTH} numbers (one person), "
                        f"got shape {subset.shape}")
    indices = subset.reshape(-1)[:KEYPOINTS]
    bad = (indices != np.round(indices)) | (indices < -1) | (indices >= len(candidate))
    if bad.any():
        raise DataError(f"{subset_path}: keypoint indices must be -1 (missing) or a row of {candidate_path} "
                        f"(0..{len(candidate) - 1}); got {indices[bad].tolist()}")
    keypoints = np.full((KEYPOINTS, 2), np.nan)
    present = indices >= 0
    keypoints[present] = candidate[indices[present].astype(np.int64), :2]
    return keypoints


# ----------------------------------------------------------------------------- pose map


def _limb_polygon(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The official limb ellipse; int() truncations as in the official code."""
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x0 - x1, y0 - y1)
    angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
    centre = (int((x0 + x1) / 2), int((y0 + y1) / 2))
    return cv2.ellipse2Poly(centre, (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)


def _resize_u8(channel: np.ndarray, height: int, width: int, method: int) -> np.ndarray:
    return np.asarray(Image.fromarray(channel).resize((width, height), method))


def pose_map(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [height, width, 20] in [0, 1]: RGB skeleton, then 17 limb distance maps."""
    present = ~np.isnan(keypoints[:, 0])
    canvas = np.zeros((POSE_FRAME, POSE_FRAME, 3), np.uint8)
    for i in np.flatnonzero(present):
        x, y = keypoints[i]
        cv2.circle(canvas, (int(x), int(y)), CIRCLE_RADIUS, COLOURS_BGR[i], thickness=-1)
    limbs = []
    for i, (a, b) in enumerate(LIMBS):
        if not (present[a - 1] and present[b - 1]):
            # Officially an all-zero mask; OpenCV's distance transform of an image with
            # no zero pixel is FLT_MAX everywhere, which the clip turns into 255.
            limbs.append(np.full((height, width), 255, np.uint8))
            continue
        polygon = _limb_polygon(keypoints[a - 1], keypoints[b - 1])
        stroke = canvas.copy()
        cv2.fillConvexPoly(stroke, polygon, COLOURS_BGR[i])
        canvas = cv2.addWeighted(canvas, 0.4, stroke, 0.6, 0)  # limbs are translucent
        mask = np.zeros((POSE_FRAME, POSE_FRAME), np.uint8)
        cv2.fillConvexPoly(mask, polygon, 255)
        distance = cv2.distanceTransform(255 - mask, cv2.DIST_L1, 3)
        limb = np.clip(distance / 3, 0, 255).astype(np.uint8)
        limbs.append(_resize_u8(limb, height, width, Image.BILINEAR))
    skeleton = _resize_u8(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), height, width, Image.NEAREST)
    channels = np.concatenate([skeleton, np.stack(limbs, axis=-1)], axis=-1)
    return channels.astype(np.float32) / 255.0


# ----------------------------------------------------------------------------- source


class DeepFashionSource(FolderSource):
    """Targets from the image list; exemplars by the official pair-list rule.

    With `data.exemplar.mode: pair_list` and no `data.exemplar.pair_list`, training
    takes the first same-person entry of the self-pair list (the last entry of the
    reference list where a target has none) and counts it as self_ref; testing takes
    the first entry of the test reference list (another person, self_ref 0). A given
    `data.exemplar.pair_list`, or the modes 'pseudo' and 'random', use the generic
    FolderSource machinery instead.
    """

    def __init__(self, config: DataConfig):
        super().__init__(config)
        keys = self._targets()[: config.max_samples or None]
        exemplar = config.exemplar
        official = exemplar.mode == "pair_list" and not exemplar.pair_list
        # the official training pairs show the same person; a user's list need not
        self.pairs_are_self_ref = official and config.phase == "train"
        self._finish(keys, self._official_pairs(keys) if official else None)

    def _path(self, name: str) -> str:
        return name if os.path.isabs(name) else os.path.join(self.root, name)

    def _targets(self) -> list[str]:
        listed = self.config.deepfashion.image_list
        if not listed:
            keys = [normalise_key(os.path.join("img", p)) for p in list_images(os.path.join(self.root, "img"))]
            keys = [k for k in keys if all(os.path.isfile(p) for p in pose_paths(self.root, k))]
            if not keys:
                raise DataError(f"{self.root}: no photo under img/ has keypoint files under pose/")
            return keys
        path = self._path(listed)
        if not os.path.isfile(path):
            raise DataError(f"{path}: image list (data.deepfashion.image_list) does not exist")
        keys, missing = [], []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    keys.append(normalise_key(line))
                    if not os.path.isfile(os.path.join(self.root, keys[-1])):
                        missing.append(f"line {number}: {keys[-1]}")
        if missing:
            raise DataError(f"{path}: {len(missing)} listed photos do not exist under {self.root}: "
                            + "; ".join(missing[:5]) + ("; ..." if len(missing) > 5 else ""))
        if not keys:
            raise DataError(f"{path}: image list is empty")
        for key in keys:
            pose_paths(self.root, key)  # fail now, not mid-epoch, on photos outside img/
        return keys

    def _official_pairs(self, keys: list[str]) -> dict[str, list[str]]:
        d = self.config.deepfashion
        train = self.config.phase == "train"
        ref_path = self._path(d.ref_list or ("deepfashion_ref.txt" if train else "deepfashion_ref_test.txt"))
        refs = read_pair_list(ref_path, self.root)
        lists = ref_path
        if train:
            self_path = self._path(d.self_pair_list) if d.self_pair_list else None
            same_person = read_pair_list(self_path, self.root) if self_path else {}
            lists = f"{self_path} and {ref_path}" if self_path else ref_path
            # The picker applies data.exemplar.pair_choice to these lists ('first' is official).
            pairs = {k: same_person[k] if k in same_person else refs[k][-1:]
                     for k in keys if k in same_person or k in refs}
        else:
            pairs = refs
        absent = [k for k in keys if k not in pairs]
        if absent:
            raise DataError(f"{lists}: {len(absent)} targets have no line, e.g. {absent[:3]}")
        return pairs

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        photo = read_rgb(os.path.join(self.root, key))
        if photo.shape[0] != photo.shape[1]:  # an original photo, not yet in the pose frame
            photo = square_photo(photo)
        keypoints = read_keypoints(*pose_paths(self.root, key))
        return resize_image(photo, self.height, self.width), pose_map(keypoints, self.height, self.width)
