"""Random smooth geometric transforms with an exact inverse, and sampling by them.

A `SmoothWarp` maps a target pixel position p to the exemplar position q = F(p) that
shows the same content: an affine map plus a smooth non-rigid part (a few sinusoidal
modes), in coordinates normalised by half the longer side so that the same random
draw means the same geometry at every resolution. Its Lipschitz bound keeps F a
diffeomorphism, so F^-1 exists and fixed-point iteration finds it to machine precision.

Pixel convention everywhere: position (x, y) is the centre of column x, row y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ROTATION_DEG = 15.0
MAX_LOG_SCALE = 0.15
MAX_SHEAR = 0.08
MAX_TRANSLATION = 0.10
NON_RIGID_MODES = 4
NON_RIGID_LIPSCHITZ = 0.25  # at strength 1: sum over modes of |amplitude| * 2 pi |frequency|
BEND_FREQUENCY = (0.5, 1.5)  # an object's bend: cycles per normalised unit (objects span ~0.2-0.8)


@dataclass(frozen=True)
class SmoothWarp:
    height: int
    width: int
    matrix: np.ndarray  # [2, 2] acting on normalised (x, y)
    offset: np.ndarray  # [2]
    frequencies: np.ndarray  # [K, 2] cycles per normalised unit
    amplitudes: np.ndarray  # [K, 2]
    phases: np.ndarray  # [K]

    @staticmethod
    def random(rng: np.random.Generator, height: int, width: int, strength: float = 1.0) -> "SmoothWarp":
        s = float(strength)
        angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG) * s)
        scale = np.exp(rng.uniform(-MAX_LOG_SCALE, MAX_LOG_SCALE, size=2) * s)
        shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR) * s
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
        offset = rng.uniform(-MAX_TRANSLATION, MAX_TRANSLATION, size=2) * s
        frequencies, amplitudes, phases = _sinusoid_modes(rng, NON_RIGID_LIPSCHITZ * s, (0.25, 0.75))
        return SmoothWarp(height, width, matrix, offset, frequencies, amplitudes, phases)

    @staticmethod
    def rigid(rng: np.random.Generator, height: int, width: int, centre, angle: float, translation,
              bend: float, bend_frequency: tuple[float, float] = BEND_FREQUENCY) -> "SmoothWarp":
        """A rotation by `angle` (radians) about `centre`, then a `translation` (both in
        normalised units), plus a smooth bend of Lipschitz bound `bend` (< 1)."""
        cos, sin = np.cos(angle), np.sin(angle)
        rot = np.array([[cos, -sin], [sin, cos]])
        centre = np.asarray(centre, dtype=np.float64)
        offset = centre + np.asarray(translation, dtype=np.float64) - rot @ centre
        frequencies, amplitudes, phases = _sinusoid_modes(rng, bend, bend_frequency)
        return SmoothWarp(height, width, rot, offset, frequencies, amplitudes, phases)

    # normalised coordinates: centre of the image at 0, half the longer side = 1
    def _centre_radius(self) -> tuple[np.ndarray, float]:
        return np.array([(self.width - 1) / 2, (self.height - 1) / 2]), max(self.height, self.width) / 2

    def to_normalised(self, xy: np.ndarray) -> np.ndarray:
        c, r = self._centre_radius()
        return (xy - c) / r

    def to_pixels(self, uv: np.ndarray) -> np.ndarray:
        c, r = self._centre_radius()
        return uv * r + c

    def _displacement(self, uv: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi * (uv @ self.frequencies.T) + self.phases  # [..., K]
        return np.sin(angle) @ self.amplitudes

    def forward_normalised(self, uv: np.ndarray) -> np.ndarray:
        return uv @ self.matrix.T + self.offset + self._displacement(uv)

    def inverse_normalised(self, vw: np.ndarray, iterations: int = 100) -> np.ndarray:
        inv = np.linalg.inv(self.matrix)
        base = (vw - self.offset) @ inv.T
        uv = base
        for _ in range(iterations):
            new = base - self._displacement(uv) @ inv.T
            if np.max(np.abs(new - uv), initial=0.0) < 1e-12:
                return new
            uv = new
        return uv

    def forward(self, xy: np.ndarray) -> np.ndarray:
        """Target pixel positions [..., 2] (x, y) -> exemplar pixel positions."""
        return self.to_pixels(self.forward_normalised(self.to_normalised(xy)))

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        """Exemplar pixel positions -> the target positions they show."""
        return self.to_pixels(self.inverse_normalised(self.to_normalised(xy)))

    def flow(self) -> np.ndarray:
        """[H, W, 2] float32: for each target pixel, its exemplar position (x, y)."""
        return self.forward(xy_grid(self.height, self.width)).astype(np.float32)


def _sinusoid_modes(rng: np.random.Generator, lipschitz: float, frequency: tuple[float, float]):
    """NON_RIGID_MODES sinusoidal displacement modes (frequencies [K, 2] in cycles per
    normalised unit, amplitudes [K, 2], phases [K]) whose summed slope is at most `lipschitz`."""
    direction = rng.uniform(0, 2 * np.pi, size=NON_RIGID_MODES)
    magnitude = rng.uniform(*frequency, size=NON_RIGID_MODES)
    frequencies = np.stack([np.cos(direction), np.sin(direction)], -1) * magnitude[:, None]
    share = rng.uniform(0.5, 1.0, size=NON_RIGID_MODES) * lipschitz / NON_RIGID_MODES
    unit = rng.normal(size=(NON_RIGID_MODES, 2))
    unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
    amplitudes = unit * (share / (2 * np.pi * magnitude))[:, None]
    return frequencies, amplitudes, rng.uniform(0, 2 * np.pi, size=NON_RIGID_MODES)


def xy_grid(height: int, width: int) -> np.ndarray:
    """[H, W, 2] float64 pixel centres (x, y)."""
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    return np.stack([xs, ys], axis=-1)


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample `image` [H, W, C] at float positions `xy` [..., 2]; borders are replicated."""
    h, w = image.shape[:2]
    x = np.clip(xy[..., 0], 0, w - 1)
    y = np.clip(xy[..., 1], 0, h - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(h - 2, 0))
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(image.dtype)


def sample_nearest(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x = np.clip(np.rint(xy[..., 0]).astype(np.int64), 0, w - 1)
    y = np.clip(np.rint(xy[..., 1]).astype(np.int64), 0, h - 1)
    return image[y, x]


def inside(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean mask of positions that lie within the pixel centres of an H x W image."""
    return (xy[..., 0] >= 0) & (xy[..., 0] <= width - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= height - 1)


def pseudo_pair(image: np.ndarray, label: np.ndarray, warp: SmoothWarp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exemplar made by warping the target itself: (exemplar, exemplar_label, flow).

    The exemplar pixel q shows the target at F^-1(q) (bilinear for the image, nearest for
    the semantic map); the flow is F on the target grid, exact by construction.
    """
    h, w = image.shape[:2]
    source = warp.inverse(xy_grid(h, w))
    exemplar = sample_bilinear(image, source)
    exemplar_label = sample_nearest(label, source)
    return exemplar, exemplar_label, warp.flow()
