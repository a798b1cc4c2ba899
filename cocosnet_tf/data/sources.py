"""Sample sources: indexable datasets that load one sample dict as NumPy arrays.

A source has a length and `load(index, seed)`, which returns the sample dict at the
configured load size (before augmentation):

    label          float32 [H, W, Cs]  semantic map of the target
    image          float32 [H, W, 3]   target photo in [-1, 1]
    exemplar       float32 [H, W, 3]   exemplar photo in [-1, 1]
    exemplar_label float32 [H, W, Cs]  semantic map of the exemplar
    self_ref       float32 []          1 when the exemplar shows the target's content
    flow           float32 [H, W, 2]   per target pixel, the exemplar position (x, y)
    flow_mask      float32 [H, W, 1]   1 where `flow` is known: the point is visible in the
                                       exemplar (not occluded) and inside it
    has_flow       float32 []          1 when `flow` is the true correspondence, else 0
                                       (then `flow` and `flow_mask` are all zeros)

Every source returns every key, so that samples of one dataset batch together. The
result is a pure function of (index, seed): random choices (exemplar, pseudo-pair
warp) draw from `numpy.random.default_rng([seed, index])`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import numpy as np

from cocosnet_tf.data import synthetic
from cocosnet_tf.data.geometry import inside
from cocosnet_tf.data.labels import semantic_map

if TYPE_CHECKING:  # the configuration imports the data kinds, which import this module
    from cocosnet_tf.config import DataConfig

SAMPLE_KEYS = ("label", "image", "exemplar", "exemplar_label", "self_ref", "flow", "flow_mask", "has_flow")


def make_sample(image: np.ndarray, label: np.ndarray, exemplar: np.ndarray, exemplar_label: np.ndarray,
                self_ref: bool, flow: np.ndarray | None, flow_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Assemble a sample dict from images in [0, 1] (float) or uint8 and semantic maps.
    `flow_mask` [H, W] marks where a given flow is known (default: everywhere); points
    outside the exemplar are masked either way."""
    h, w = image.shape[:2]
    if flow is None:
        known = np.zeros((h, w), bool)
    else:
        known = inside(flow, h, w) & (True if flow_mask is None else flow_mask.astype(bool))
    for name, arr in (("label", label), ("exemplar", exemplar), ("exemplar_label", exemplar_label)):
        if arr.shape[:2] != (h, w):
            raise ValueError(f"{name} is {arr.shape[:2]}, the image is {(h, w)}; all must share one size")
    return {
        "label": label.astype(np.float32),
        "image": _to_signed(image),
        "exemplar": _to_signed(exemplar),
        "exemplar_label": exemplar_label.astype(np.float32),
        "self_ref": np.float32(self_ref),
        "flow": np.zeros((h, w, 2), np.float32) if flow is None else flow.astype(np.float32),
        "flow_mask": known[..., None].astype(np.float32),
        "has_flow": np.float32(flow is not None),
    }


def _to_signed(image: np.ndarray) -> np.ndarray:
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    return (image.astype(np.float32) / scale * 2.0 - 1.0).astype(np.float32)


class Source(abc.ABC):
    """An indexable dataset of samples at a fixed load size."""

    def __init__(self, config: DataConfig):
        self.config = config
        self.height, self.width = config.load_hw
        self.semantic_nc = config.semantic_nc

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def load(self, index: int, seed: int) -> dict[str, np.ndarray]: ...

    def name(self, index: int) -> str:
        """A human-readable name of sample `index` (a file path where there is one)."""
        return f"sample {index}"


class SyntheticSource(Source):
    """The embedded procedural scenes; the layout of sample i depends on (data.seed, i)."""

    def __len__(self) -> int:
        n = self.config.synthetic.num_samples
        return min(n, self.config.max_samples) if self.config.max_samples else n

    def load(self, index: int, seed: int) -> dict[str, np.ndarray]:
        s = self.config.synthetic
        pair = synthetic.make_pair(
            self.config.seed, int(index), self.height, self.width,
            min_objects=s.min_objects, max_objects=s.max_objects, warp_strength=s.warp_strength,
            cross_scene_probability=s.cross_scene_probability, motion=s.motion,
        )
        return make_sample(
            pair.image, self._semantic(pair.classes, pair.instances),
            pair.exemplar, self._semantic(pair.exemplar_classes, pair.exemplar_instances),
            pair.self_ref, pair.flow, pair.flow_mask,
        )

    def _semantic(self, classes: np.ndarray, instances: np.ndarray) -> np.ndarray:
        c = self.config
        return semantic_map(classes, c.label_nc, contain_dontcare_label=c.contain_dontcare_label,
                            instance=instances if c.use_instance else None, source="synthetic scene")

