"""Dataset kinds: what each value of `data.dataset` means to the rest of the package.

One object per kind answers every question that depends on the kind: the semantic map's
channels and their layout, whether its maps have classes, the config checks of the
kind, the training source, how translate reads a user's input file and how the export
decodes an encoded one. Callers ask `dataset_kind(data)` instead of comparing names.

The configuration builds on this module (defaults, checks, channel counts), so it imports
no module that imports the configuration, and nothing heavy: config must load without
TensorFlow or OpenCV (`--help`, usage errors). The modules a method needs (sources,
image readers, TensorFlow) load when it is called.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import numpy as np

from cocosnet_tf.fileio import ConfigError, require

if TYPE_CHECKING:
    from cocosnet_tf.config import DataConfig
    from cocosnet_tf.data.sources import Source

# Synthetic scenes: background plus the object classes of cocosnet_tf.data.synthetic.
SYNTHETIC_CLASSES = 8
# DeepFashion pose maps: RGB skeleton + 17 limb distance maps (the official layout).
POSE_CHANNELS = 20

# the forms a user's semantic input comes in (translate compares them between the
# input and the exemplar's map)
LABEL_MAP, EDGE_MAP, PHOTO, KEYPOINTS, ARRAY = "label map", "edge map", "photo", "keypoint files", ".npy array"


class DatasetKind(abc.ABC):
    """The behaviour every kind gives; subclasses fill it in."""

    name = ""
    from_files = True  # False: generated, so there is no root folder and nothing to pair
    has_classes = True  # False: the map has no class channels; the whole image is one region
    derives_exemplar_map = False  # the exemplar's map can be computed from the exemplar photo
    translate_args = ""  # translate's input arguments, as the hint after training shows them

    @abc.abstractmethod
    def semantic_nc(self, data: DataConfig) -> int: ...

    @abc.abstractmethod
    def channel_layout(self, data: DataConfig) -> str:
        """The channels of the semantic map in words, for error messages."""

    def check(self, data: DataConfig) -> None:
        """Config checks that only this kind needs (ConfigError on failure)."""
        if self.from_files:
            require(bool(data.root), "data.root", f"the {self.name!r} dataset needs a root folder")

    @abc.abstractmethod
    def build_source(self, data: DataConfig) -> Source: ...

    @abc.abstractmethod
    def read_input(self, path: str, data: DataConfig, hw: tuple[int, int]) -> tuple[np.ndarray, str, tuple | None]:
        """A user's semantic input file (not .npy): (the map float32 [h, w, C] at `hw`, its
        form, the file's own (H, W) or None)."""

    def exemplar_photo(self, rgb: np.ndarray) -> np.ndarray:
        """A user's exemplar photo brought into the frame the dataset's photos are in."""
        return rgb

    def encoded_reason(self, data: DataConfig) -> str:
        """Why an export of this kind cannot take encoded images ('' when it can)."""
        return ""

    def decode_encoded(self, pixels, data: DataConfig):
        """TensorFlow: a decoded one-channel image uint8 [h, w] -> float32 [h, w, C]. Only
        kinds without an `encoded_reason` have it."""
        raise NotImplementedError

    def encode_example(self, semantic: np.ndarray, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
        """An image uint8 [H, W] that `decode_encoded` turns into a map, and that map: the
        nearest such image to the map `semantic` [H, W, C] (for checking an export)."""
        raise NotImplementedError


class _LabelKind(DatasetKind):
    """Maps of class ids: one-hot classes, then optional don't-care and instance channels."""

    translate_args = "--input LABELS.png --exemplar PHOTO.png --exemplar-input PHOTO_LABELS.png"

    def id_rule(self, data: DataConfig) -> tuple[int, int | None]:
        """(offset added to the file's ids, the don't-care id or None)."""
        return 0, None

    def semantic_nc(self, data: DataConfig) -> int:
        return data.label_nc + int(data.contain_dontcare_label) + int(data.use_instance)

    def channel_layout(self, data: DataConfig) -> str:
        parts = [f"{data.label_nc} classes"]
        if data.contain_dontcare_label:
            parts.append("don't-care")
        if data.use_instance:
            parts.append("instance boundaries")
        return " + ".join(parts) + f" = {self.semantic_nc(data)} channels"

    def read_input(self, path: str, data: DataConfig, hw: tuple[int, int]) -> tuple[np.ndarray, str, tuple | None]:
        from cocosnet_tf.data.folders import resize_ids
        from cocosnet_tf.data.labels import semantic_map
        from cocosnet_tf.fileio import DataError, read_label_ids

        if data.use_instance:
            raise DataError(f"{path}: this run's semantic map has an instance-boundary channel (data.use_instance), "
                            f"which a label map alone does not give; pass a .npy semantic map "
                            f"[H, W, {self.semantic_nc(data)}] ({self.channel_layout(data)})")
        ids = read_label_ids(path)
        offset, dontcare = self.id_rule(data)
        label = semantic_map(resize_ids(ids, *hw) + offset, data.label_nc, dontcare_id=dontcare,
                             contain_dontcare_label=data.contain_dontcare_label, source=path)
        return label, LABEL_MAP, ids.shape[:2]

    def encoded_reason(self, data: DataConfig) -> str:
        if data.use_instance:
            return "the instance-boundary channel needs instance maps; use the float signature"
        return ""

    def decode_encoded(self, pixels, data: DataConfig):
        import tensorflow as tf

        offset, dontcare = self.id_rule(data)
        ids = tf.cast(pixels, tf.int32) + offset
        is_dontcare = tf.equal(ids, dontcare) if dontcare is not None else tf.zeros_like(ids, tf.bool)
        valid = tf.logical_or(is_dontcare, tf.logical_and(ids >= 0, ids < data.label_nc))
        check = tf.debugging.assert_equal(tf.reduce_all(valid), True,
                                          message=f"label ids must be within 0..{data.label_nc - 1}"
                                                  + (f" or the don't-care id {dontcare}" if dontcare is not None
                                                     else ""))
        with tf.control_dependencies([check]):
            onehot = tf.one_hot(tf.where(is_dontcare, -1, ids), data.label_nc)
        if data.contain_dontcare_label:
            onehot = tf.concat([onehot, tf.cast(is_dontcare, tf.float32)[..., None]], -1)
        return onehot

    def encode_example(self, semantic: np.ndarray, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
        offset, _ = self.id_rule(data)
        # ids the PNG can hold (0..255 after the offset), one-hot over label_nc, no don't-care pixel
        ids = np.clip(np.argmax(semantic, -1), max(0, offset), min(data.label_nc, 256 + offset) - 1)
        decoded = np.zeros_like(semantic)
        decoded[..., :data.label_nc] = np.eye(data.label_nc, dtype=semantic.dtype)[ids]
        return (ids - offset).astype(np.uint8), decoded


class Synthetic(_LabelKind):
    name = "synthetic"
    from_files = False

    def check(self, data: DataConfig) -> None:
        require(data.label_nc >= SYNTHETIC_CLASSES, "data.label_nc",
                f"{data.label_nc} is below the {SYNTHETIC_CLASSES} labels present in the synthetic scenes "
                f"(background + {SYNTHETIC_CLASSES - 1} object classes); allowed: >= {SYNTHETIC_CLASSES}")
        s = data.synthetic
        require(s.num_samples >= 1, "data.synthetic.num_samples", f"must be >= 1, got {s.num_samples}")
        most = SYNTHETIC_CLASSES - 1 if s.motion == "objects" else 32
        require(1 <= s.min_objects <= s.max_objects <= most, "data.synthetic.min_objects",
                f"need 1 <= min_objects ({s.min_objects}) <= max_objects ({s.max_objects}) <= {most}"
                + (" (motion objects: one object per class)" if s.motion == "objects" else ""))
        require(0.0 <= s.warp_strength <= 2.0, "data.synthetic.warp_strength",
                f"must be within [0, 2], got {s.warp_strength}")
        require(0.0 <= s.cross_scene_probability <= 1.0, "data.synthetic.cross_scene_probability",
                f"must be a probability, got {s.cross_scene_probability}")

    def build_source(self, data: DataConfig) -> Source:
        from cocosnet_tf.data.sources import SyntheticSource
        return SyntheticSource(data)


def _check_pair_list(data: DataConfig) -> None:
    if data.exemplar.mode == "pair_list":
        require(bool(data.exemplar.pair_list), "data.exemplar.pair_list", "mode 'pair_list' needs a pair list file")


class Segmentation(_LabelKind):
    name = "segmentation"

    def id_rule(self, data: DataConfig) -> tuple[int, int | None]:
        return data.segmentation.label_offset, data.segmentation.dontcare_id

    def check(self, data: DataConfig) -> None:
        super().check(data)
        _check_pair_list(data)

    def build_source(self, data: DataConfig) -> Source:
        from cocosnet_tf.data.segmentation import SegmentationSource
        return SegmentationSource(data)


class Edges(DatasetKind):
    name = "edges"
    has_classes = False
    derives_exemplar_map = True
    translate_args = "--input EDGES_OR_PHOTO.png --exemplar PHOTO.png"

    def semantic_nc(self, data: DataConfig) -> int:
        return 1

    def channel_layout(self, data: DataConfig) -> str:
        return "an edge map: 1 channel"

    def check(self, data: DataConfig) -> None:
        super().check(data)
        _check_pair_list(data)
        e = data.edges
        require(0 <= e.canny_low <= e.canny_high, "data.edges.canny_low",
                f"need 0 <= canny_low ({e.canny_low}) <= canny_high ({e.canny_high})")

    def build_source(self, data: DataConfig) -> Source:
        from cocosnet_tf.data.edges import EdgeSource
        return EdgeSource(data)

    def read_input(self, path: str, data: DataConfig, hw: tuple[int, int]) -> tuple[np.ndarray, str, tuple | None]:
        from cocosnet_tf.data.edges import binary_picture, edge_map
        from cocosnet_tf.data.folders import resize_ids, resize_image
        from cocosnet_tf.fileio import read_rgb

        rgb = read_rgb(path)
        edges = binary_picture(rgb)
        if edges is None:
            return edge_map(resize_image(rgb, *hw), data.edges), PHOTO, rgb.shape[:2]
        if edges.mean() > 0.5:  # black edges on white
            edges = ~edges
        return resize_ids(edges, *hw).astype(np.float32)[..., None], EDGE_MAP, rgb.shape[:2]

    def decode_encoded(self, pixels, data: DataConfig):
        import tensorflow as tf
        return tf.cast(pixels > 127, tf.float32)[..., None]

    def encode_example(self, semantic: np.ndarray, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
        return semantic[..., 0].astype(np.uint8) * 255, semantic


class DeepFashion(DatasetKind):
    name = "deepfashion"
    has_classes = False
    translate_args = "--input POSE_candidate.txt --exemplar PHOTO.jpg --exemplar-input PHOTO_candidate.txt"

    def semantic_nc(self, data: DataConfig) -> int:
        return POSE_CHANNELS

    def channel_layout(self, data: DataConfig) -> str:
        return f"a pose map: RGB skeleton + 17 limb maps = {POSE_CHANNELS} channels"

    def build_source(self, data: DataConfig) -> Source:
        from cocosnet_tf.data.deepfashion import DeepFashionSource
        return DeepFashionSource(data)

    def read_input(self, path: str, data: DataConfig, hw: tuple[int, int]) -> tuple[np.ndarray, str, tuple | None]:
        from cocosnet_tf.data.deepfashion import KEYPOINT_SUFFIXES, keypoint_stem, pose_map, read_keypoints
        from cocosnet_tf.fileio import DataError

        stem = keypoint_stem(path)
        if stem is None:
            raise DataError(f"{path}: a deepfashion run takes OpenPose keypoint files (NAME_candidate.txt with "
                            f"NAME_subset.txt beside it) or a .npy pose map [H, W, {POSE_CHANNELS}]")
        keypoints = read_keypoints(stem + KEYPOINT_SUFFIXES[0], stem + KEYPOINT_SUFFIXES[1])
        return pose_map(keypoints, *hw), KEYPOINTS, None

    def exemplar_photo(self, rgb: np.ndarray) -> np.ndarray:
        from cocosnet_tf.data.deepfashion import square_photo
        return square_photo(rgb) if rgb.shape[0] != rgb.shape[1] else rgb

    def encoded_reason(self, data: DataConfig) -> str:
        return f"pose maps ({POSE_CHANNELS} channels) are not images; use the float signature"


KINDS: dict[str, DatasetKind] = {kind.name: kind for kind in (Synthetic(), Segmentation(), Edges(), DeepFashion())}


def dataset_kind(data: DataConfig) -> DatasetKind:
    """The kind named by `data.dataset`."""
    try:
        return KINDS[data.dataset]
    except KeyError:
        raise ConfigError(f"data.dataset: unknown dataset {data.dataset!r}; allowed: "
                          + ", ".join(KINDS)) from None


def build_source(data: DataConfig) -> Source:
    """The training/evaluation source of `data`'s dataset."""
    return dataset_kind(data).build_source(data)
