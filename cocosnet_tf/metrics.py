"""Correspondence and image metrics on NumPy arrays (flow convention: absolute exemplar
positions (x, y), pixel centres at integers)."""

from __future__ import annotations

import numpy as np

from cocosnet_tf.data.geometry import inside, pixel_grid


def expected_positions(positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[..., K, 2] candidate positions and [..., K] softmax weights -> [..., 2]: the
    position the warp effectively samples."""
    return np.sum(positions * weights[..., None], axis=-2)


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """[B, H, W, ...] -> [B, H/f, W/f, ...]: means over f x f blocks (a level's pooling)."""
    b, h, w = array.shape[:3]
    blocks = array.reshape(b, h // factor, factor, w // factor, factor, *array.shape[3:])
    return blocks.mean(axis=(2, 4))


def flow_at_level(flow: np.ndarray, mask: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution flow [B, H, W, 2] and mask -> the flow between level pixels.

    Level pixel i covers full pixels f i .. f i + f - 1, whose centre is f i + (f - 1) / 2;
    a level pixel counts only when its whole block has a valid flow.
    """
    level = (block_mean(flow, factor) - (factor - 1) / 2.0) / factor
    return level, block_mean(mask.astype(np.float32), factor) == 1.0


def valid_flow_mask(flow: np.ndarray, has_flow: np.ndarray) -> np.ndarray:
    """[B, H, W]: pixels of samples with a known flow that lands inside the exemplar."""
    return inside(flow, *flow.shape[1:3]) & (np.reshape(has_flow, (-1, 1, 1)) > 0)


def endpoint_errors(predicted: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Euclidean distances between predicted and true positions at the masked pixels."""
    return np.hypot(*np.moveaxis(predicted - flow, -1, 0))[mask]


def identity_positions(batch: int, height: int, width: int) -> np.ndarray:
    """The zero flow: every pixel matched to itself."""
    return np.broadcast_to(pixel_grid(height, width), (batch, height, width, 2))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image PSNR (dB) of images in [-1, 1], peak 1 after mapping to [0, 1]."""
    mse = np.mean(((a - b) / 2.0) ** 2, axis=tuple(range(1, a.ndim)))
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))
