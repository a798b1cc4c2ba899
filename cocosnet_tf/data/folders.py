"""Shared machinery of the folder datasets: read a target, choose and read its exemplar."""

from __future__ import annotations

import abc
import os
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cocosnet_tf.data.exemplars import ExemplarPicker, read_pair_list
from cocosnet_tf.data.geometry import SmoothWarp, pseudo_pair
from cocosnet_tf.data.sources import Source, make_sample
from cocosnet_tf.fileio import DataError

if TYPE_CHECKING:  # the configuration imports the data kinds, which import this module
    from cocosnet_tf.config import DataConfig


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 photo -> (height, width), bicubic like the official loaders."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def resize_ids(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """Integer id map -> (height, width) by nearest neighbour (ids must never blend)."""
    if ids.shape[:2] == (height, width):
        return ids
    rows = np.minimum(((np.arange(height) + 0.5) * ids.shape[0] / height).astype(np.int64), ids.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * ids.shape[1] / width).astype(np.int64), ids.shape[1] - 1)
    return ids[rows][:, cols]


class FolderSource(Source):
    """A dataset whose samples are files under `data.root`, keyed by relative paths.

    Subclasses set `self.keys` (the targets) and implement `read(key)`, which returns the
    photo (uint8, load size) and its semantic map; this class adds the exemplar.
    """

    pairs_are_self_ref = False  # the DeepFashion training pairs are (same person)

    def __init__(self, config: DataConfig):
        super().__init__(config)
        self.root = config.root
        if not os.path.isdir(self.root):
            raise DataError(f"{self.root}: data.root folder does not exist")
        self.keys: list[str] = []

    def _finish(self, keys: list[str], pairs: dict[str, list[str]] | None = None) -> None:
        """Called by subclasses once their keys are known; `pairs` overrides the
        configured pair list (DeepFashion merges its official lists)."""
        if not keys:
            raise DataError(f"{self.root}: no samples found for data.dataset={self.config.dataset!r}")
        if self.config.max_samples:
            keys = keys[: self.config.max_samples]
        self.keys = keys
        exemplar = self.config.exemplar
        if pairs is None and exemplar.mode == "pair_list":
            path = exemplar.pair_list
            pairs = read_pair_list(path if os.path.isabs(path) else os.path.join(self.root, path), self.root,
                                   self.resolve_key)
        self.picker = ExemplarPicker(exemplar, keys, pairs, self.pairs_are_self_ref,
                                     training=self.config.phase == "train")

    def resolve_key(self, entry: str) -> str:
        """A pair-list entry -> a key relative to data.root (here: unchanged)."""
        return entry

    def __len__(self) -> int:
        return len(self.keys)

    def name(self, index: int) -> str:
        return os.path.join(self.root, self.keys[index])

    @abc.abstractmethod
    def read(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 photo [H, W, 3], semantic map float32 [H, W, Cs]) at the load size."""

    def pseudo_label(self, exemplar: np.ndarray, warped_label: np.ndarray) -> np.ndarray:
        """The semantic map of a pseudo-pair exemplar (float photo in [0, 1]): by default
        the target's map carried along by the warp."""
        return warped_label

    def load(self, index: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, int(index)])
        key = self.keys[int(index)]
        image, label = self.read(key)
        choice = self.picker.pick(key, rng)
        if choice.pseudo:
            warp = SmoothWarp.random(rng, self.height, self.width, self.config.exemplar.warp_strength)
            exemplar, exemplar_label, flow = pseudo_pair(image.astype(np.float32) / 255.0, label, warp)
            return make_sample(image, label, exemplar, self.pseudo_label(exemplar, exemplar_label), True, flow)
        exemplar, exemplar_label = self.read(choice.key)
        return make_sample(image, label, exemplar, exemplar_label, choice.self_ref, None)
