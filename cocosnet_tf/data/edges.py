"""Edge maps from photos (the MetFaces / CelebA-HQ edge task): any folder of images."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import cv2
import numpy as np

from cocosnet_tf.data.folders import FolderSource, resize_image
from cocosnet_tf.fileio import list_images, read_rgb

if TYPE_CHECKING:  # the configuration imports the data kinds, which import this module
    from cocosnet_tf.config import DataConfig, EdgesConfig


def edge_map(image: np.ndarray, config: EdgesConfig) -> np.ndarray:
    """Canny edges of a uint8 RGB photo, float32 [H, W, 1] in {0, 1}.

    The photo is blurred first so that texture noise does not become edges; edges are
    computed at the load size, so their thickness is one pixel at every resolution.
    """
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if config.blur_sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), config.blur_sigma)
    edges = cv2.Canny(gray, config.canny_low, config.canny_high)
    return (edges > 0).astype(np.float32)[..., None]


def binary_picture(rgb: np.ndarray) -> np.ndarray | None:
    """A one-channel picture of only two values (0/255 or 0/1) as bool, else None."""
    grey = rgb[..., 0]
    if not (np.array_equal(grey, rgb[..., 1]) and np.array_equal(grey, rgb[..., 2])):
        return None
    values = np.unique(grey)
    if set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}:
        return grey > 0
    return None


class EdgeSource(FolderSource):
    def __init__(self, config: DataConfig):
        super().__init__(config)
        folder = config.edges.heldout_dir if config.phase == "test" and config.edges.heldout_dir else \
            config.edges.image_dir
        keys = [f"{folder}/{rel}" if folder else rel for rel in list_images(os.path.join(self.root, folder))]
        self._finish(keys)

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        image = resize_image(read_rgb(os.path.join(self.root, key)), self.height, self.width)
        return image, edge_map(image, self.config.edges)

    def pseudo_label(self, exemplar: np.ndarray, warped_label: np.ndarray) -> np.ndarray:
        # edges of the warped photo itself, so pseudo and real exemplars get alike inputs
        return edge_map(np.clip(np.rint(exemplar * 255), 0, 255).astype(np.uint8), self.config.edges)
