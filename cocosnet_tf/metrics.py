"""Correspondence and image metrics on NumPy arrays (flow convention: absolute exemplar
positions (x, y), pixel centres at integers)."""

from __future__ import annotations

import numpy as np

from cocosnet_tf.data.geometry import inside, pixel_grid


def expected_positions(positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[..., K, 2] candidate positions and [..., K] softmax weights -> [..., 2]: the
    position the warp effectively samples."""
    return np.sum(positions * weights[..., None], axis=-2)


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
