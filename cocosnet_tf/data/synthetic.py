"""Embedded synthetic scenes: procedural layouts with per-class textures and known flow.

A scene is a background plus a few objects, each of one of seven classes with its own
shape, procedural texture and palette. Scenes are continuous: `render` evaluates them
at any positions, so the target is the scene on the pixel grid and the self-reference
exemplar is the *same* scene evaluated at F^-1 of the exemplar grid for a random
`SmoothWarp` F. Then exemplar(F(p)) == target(p), and the flow F is exact. Everything
is a pure function of (seed, index) and resolution-independent (coordinates are
normalised by half the longer side), so any size from 64 to 1024, square or not, works.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from cocosnet_tf.data.geometry import SmoothWarp, pixel_grid

MIN_SIDE = 64
MAX_SIDE = 1024
CLASS_NAMES = ("background", "disc", "box", "triangle", "ring", "band", "star", "blob")
NUM_CLASSES = len(CLASS_NAMES)
# Each object class owns a hue band, so a class keeps its palette across scenes.
CLASS_HUES = {cls: (cls - 1) / (NUM_CLASSES - 1) for cls in range(1, NUM_CLASSES)}


@dataclass(frozen=True)
class SceneObject:
    cls: int
    centre: tuple[float, float]
    size: tuple[float, float]  # half-extents along the object's own axes
    angle: float
    frequency: float  # texture frequency in the object's local units
    phase: float
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    extra: tuple[float, ...]  # class-specific shape/texture parameters


@dataclass(frozen=True)
class Scene:
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    background_waves: np.ndarray  # [3, 4]: direction x, direction y, frequency, phase
    objects: tuple[SceneObject, ...]


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def _class_colours(rng: np.random.Generator, cls: int) -> tuple:
    hue = CLASS_HUES[cls] + rng.uniform(-0.03, 0.03)
    first = _hsv(hue, rng.uniform(0.55, 0.95), rng.uniform(0.75, 1.0))
    second = _hsv(hue + rng.uniform(-0.06, 0.06), rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.45))
    return first, second


def random_scene(rng: np.random.Generator, aspect: float, min_objects: int, max_objects: int,
                 classes: list[int] | None = None) -> Scene:
    """A random layout; `aspect` = width / height. `classes` fixes the object classes."""
    ext_x, ext_y = (1.0, 1.0 / aspect) if aspect >= 1 else (aspect, 1.0)
    if classes is None:
        count = int(rng.integers(min_objects, max_objects + 1))
        classes = rng.integers(1, NUM_CLASSES, size=count).tolist()
    objects = []
    for cls in classes:
        size = rng.uniform(0.18, 0.42)
        elong = rng.uniform(0.7, 1.4)
        objects.append(
            SceneObject(
                cls=int(cls),
                centre=(rng.uniform(-0.8, 0.8) * ext_x, rng.uniform(-0.8, 0.8) * ext_y),
                size=(size * elong, size / elong),
                angle=rng.uniform(0, 2 * np.pi),
                frequency=rng.uniform(1.5, 3.0),
                phase=rng.uniform(0, 2 * np.pi),
                colours=_class_colours(rng, int(cls)),
                extra=tuple(rng.uniform(0, 1, size=4)),
            )
        )
    bg_hue = rng.uniform(0.5, 0.7)
    background = (_hsv(bg_hue, rng.uniform(0.05, 0.25), rng.uniform(0.6, 0.8)),
                  _hsv(bg_hue + 0.1, rng.uniform(0.05, 0.25), rng.uniform(0.3, 0.5)))
    waves = np.stack([rng.normal(size=3), rng.normal(size=3), rng.uniform(0.3, 1.0, 3), rng.uniform(0, 6.3, 3)], -1)
    return Scene(background, waves, tuple(objects))


def _shape_and_texture(obj: SceneObject, lx: np.ndarray, ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inside mask and texture value t in [0, 1] in the object's local coordinates."""
    r = np.hypot(lx, ly)
    theta = np.arctan2(ly, lx)
    k, ph, e = obj.frequency, obj.phase, obj.extra
    if obj.cls == 1:  # disc: concentric rings
        return r <= 1.0, 0.5 + 0.5 * np.cos(2 * np.pi * k * r + ph)
    if obj.cls == 2:  # box: smooth checkerboard
        return (np.abs(lx) <= 1) & (np.abs(ly) <= 1), 0.5 + 0.5 * np.sin(np.pi * k * lx + ph) * np.sin(np.pi * k * ly)
    if obj.cls == 3:  # triangle: diagonal stripes
        normals = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)]
        mask = np.ones(lx.shape, dtype=bool)
        for nx, ny in normals:
            mask &= nx * lx + ny * ly <= 0.5
        return mask, 0.5 + 0.5 * np.sin(2 * np.pi * k * (lx + ly) / np.sqrt(2) + ph)
    if obj.cls == 4:  # ring: radial spokes
        spokes = 5 + int(e[0] * 6)
        return (r >= 0.55) & (r <= 1.0), 0.5 + 0.5 * np.cos(spokes * theta + ph)
    if obj.cls == 5:  # band: a sinuous strip with waves along it
        centre_line = 0.35 * np.sin(np.pi * (0.5 + e[0]) * lx + ph)
        return (np.abs(ly - centre_line) <= 0.3) & (np.abs(lx) <= 1.8), 0.5 + 0.5 * np.sin(2 * np.pi * k * lx)
    if obj.cls == 6:  # star: polka dots
        dots = np.cos(np.pi * k * lx + ph) * np.cos(np.pi * k * ly)
        return r <= 0.6 + 0.4 * np.cos(5 * theta + 2 * np.pi * e[0]), np.clip(dots, 0, 1) ** 2
    # blob: smooth noise from three sinusoids
    noise = sum(np.sin(np.pi * k * (np.cos(a) * lx + np.sin(a) * ly) + ph * (i + 1))
                for i, a in enumerate(2 * np.pi * np.asarray(e[:3])))
    boundary = 0.8 + 0.15 * np.sin(3 * theta + 2 * np.pi * e[3]) + 0.08 * np.sin(7 * theta + ph)
    return r <= boundary, 0.5 + noise / 6


def render(scene: Scene, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate the scene at normalised positions uv [..., 2].

    Returns (rgb float32 in [0, 1] [..., 3], class ids int32 [...], instance ids int32 [...]).
    """
    u, v = uv[..., 0], uv[..., 1]
    waves = scene.background_waves
    t = 0.5 + 0.5 * v
    for dx, dy, freq, phase in waves:
        t = t + 0.08 * np.sin(np.pi * freq * (dx * u + dy * v) + phase)
    c0, c1 = (np.asarray(c, dtype=np.float64) for c in scene.background)
    rgb = c0 * (1 - np.clip(t, 0, 1))[..., None] + c1 * np.clip(t, 0, 1)[..., None]
    classes = np.zeros(u.shape, dtype=np.int32)
    instances = np.zeros(u.shape, dtype=np.int32)
    for index, obj in enumerate(scene.objects):
        cos, sin = np.cos(obj.angle), np.sin(obj.angle)
        du, dv = u - obj.centre[0], v - obj.centre[1]
        lx = (cos * du + sin * dv) / obj.size[0]
        ly = (-sin * du + cos * dv) / obj.size[1]
        mask, texture = _shape_and_texture(obj, lx, ly)
        a, b = (np.asarray(c, dtype=np.float64) for c in obj.colours)
        colour = a * (1 - texture)[..., None] + b * texture[..., None]
        rgb = np.where(mask[..., None], colour, rgb)
        classes[mask] = obj.cls
        instances[mask] = index + 1
    return np.clip(rgb, 0, 1).astype(np.float32), classes, instances


def check_size(height: int, width: int) -> None:
    for side, name in ((height, "height"), (width, "width")):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ValueError(f"synthetic scenes: {name} {side} is outside {MIN_SIDE}..{MAX_SIDE}")


@dataclass(frozen=True)
class SyntheticPair:
    """One target and its exemplar, as arrays: images float32 in [0, 1]."""

    image: np.ndarray
    classes: np.ndarray
    instances: np.ndarray
    exemplar: np.ndarray
    exemplar_classes: np.ndarray
    exemplar_instances: np.ndarray
    self_ref: bool
    flow: np.ndarray | None  # [H, W, 2] exemplar (x, y) per target pixel, when self_ref


def make_pair(seed: int, index: int, height: int, width: int, *, min_objects: int = 4,
              max_objects: int = 9, warp_strength: float = 1.0, cross_scene_probability: float = 0.0) -> SyntheticPair:
    """The synthetic sample `index` of dataset `seed`, rendered at height x width."""
    check_size(height, width)
    rng = np.random.default_rng([seed, index])
    aspect = width / height
    scene = random_scene(rng, aspect, min_objects, max_objects)
    warp = SmoothWarp.random(rng, height, width, warp_strength)
    cross = rng.uniform() < cross_scene_probability
    grid = pixel_grid(height, width)
    image, classes, instances = render(scene, warp.to_normalised(grid))
    if cross:
        other_rng = np.random.default_rng([seed, index, 1])
        other = random_scene(other_rng, aspect, min_objects, max_objects, [o.cls for o in scene.objects])
        exemplar, ex_classes, ex_instances = render(other, warp.to_normalised(grid))
        return SyntheticPair(image, classes, instances, exemplar, ex_classes, ex_instances, False, None)
    shown = warp.inverse_normalised(warp.to_normalised(grid))
    exemplar, ex_classes, ex_instances = render(scene, shown)
    return SyntheticPair(image, classes, instances, exemplar, ex_classes, ex_instances, True, warp.flow())
