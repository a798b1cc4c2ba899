"""Embedded synthetic scenes: procedural layouts with per-class textures and known flow.

A scene is a background plus a few objects, each of one of seven classes with its own
shape, procedural texture and palette. Scenes are continuous: `render` evaluates them
at any positions, each object (and the background) at positions of its own, so the
target is the scene on the pixel grid and the self-reference exemplar is the *same*
scene moved. Two motion models (`motion`):

- `objects`: every object moves independently of the others, by a rigid motion (a
  rotation about its centre and a translation of 25-45 % of the image side at strength
  1) with a slight bend, and the background by a gentle global warp of its own (half
  the `smooth` model's). Objects keep their depth order, so in the exemplar some cover
  others. The flow of a target pixel is the motion of the layer it shows; it is *valid*
  only where that point is visible in the exemplar (not covered by another object,
  inside the image), and the pair carries that mask. Objects of one scene have distinct
  classes, so the semantic map names each object and the correspondence it asks for is
  unique; they are larger than the `smooth` model's, so that they, not the background,
  hold most of the image. The background's motion is gentle because nothing in a
  semantic map tells where a featureless background went: only the objects' motion can
  be learned from it.
- `smooth`: one random `SmoothWarp` F moves the whole scene (a few % of the image):
  exemplar(F(p)) == target(p), valid wherever F(p) lies inside the exemplar.

Everything is a pure function of (seed, index) and resolution-independent (coordinates
are normalised by half the longer side), so any size from 64 to 1024, square or not,
works.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from cocosnet_tf.data.geometry import SmoothWarp, inside, xy_grid

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


def extent(aspect: float) -> tuple[float, float]:
    """Half the image's width and height in normalised units (the longer one is 1)."""
    return (1.0, 1.0 / aspect) if aspect >= 1 else (aspect, 1.0)


def random_scene(rng: np.random.Generator, aspect: float, min_objects: int, max_objects: int,
                 classes: list[int] | None = None, distinct: bool = False, size_scale: float = 1.0) -> Scene:
    """A random layout; `aspect` = width / height. `classes` fixes the object classes;
    otherwise they are drawn, without repeats when `distinct`. `size_scale` scales
    every object."""
    ext_x, ext_y = extent(aspect)
    if classes is None:
        count = int(rng.integers(min_objects, max_objects + 1))
        if distinct:
            classes = (rng.permutation(NUM_CLASSES - 1)[:count] + 1).tolist()
        else:
            classes = rng.integers(1, NUM_CLASSES, size=count).tolist()
    objects = []
    for cls in classes:
        size = rng.uniform(0.18, 0.42) * size_scale
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


def render(scene: Scene, uv: np.ndarray, object_uv: list[np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate the scene at normalised positions uv [..., 2]; with `object_uv` (one array
    like uv per object), object i is evaluated at object_uv[i] and the background at uv.

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
        ou, ov = (u, v) if object_uv is None else (object_uv[index][..., 0], object_uv[index][..., 1])
        cos, sin = np.cos(obj.angle), np.sin(obj.angle)
        du, dv = ou - obj.centre[0], ov - obj.centre[1]
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


MOTIONS = ("objects", "smooth")
# the `objects` motion at strength 1, in normalised units (half the longer side)
OBJECT_SHIFT = (0.5, 0.9)  # length of an object's translation: 25-45 % of the side
OBJECT_ROTATION_DEG = 30.0
OBJECT_BEND = 0.12  # Lipschitz bound of an object's non-rigid bend
OBJECT_SIZE_SCALE = 1.8  # objects against the `smooth` model's
BACKGROUND_STRENGTH = 0.5  # the background's SmoothWarp strength, per unit of warp_strength
FRAME = 0.85  # moved object centres stay within this share of the image's half-sides


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
    flow_mask: np.ndarray | None  # [H, W] bool: the flow's point is visible in the exemplar


def _shift(rng: np.random.Generator, low_high: tuple[float, float], strength: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return strength * rng.uniform(*low_high) * np.array([np.cos(angle), np.sin(angle)])


def _reflect(value: float, limit: float) -> float:
    """Fold a coordinate back into [-limit, limit] (a centre moved past the frame)."""
    period = 4 * limit
    folded = (value + limit) % period
    return (folded if folded <= 2 * limit else period - folded) - limit


def object_motion(rng: np.random.Generator, scene: Scene, height: int, width: int,
                  strength: float) -> tuple[SmoothWarp, list[SmoothWarp]]:
    """The `objects` motion: (the background's warp, one rigid-plus-bend warp per object),
    each mapping target positions to exemplar positions."""
    background = SmoothWarp.random(rng, height, width, BACKGROUND_STRENGTH * strength)
    ext = extent(width / height)
    warps = []
    for obj in scene.objects:
        moved = np.asarray(obj.centre) + _shift(rng, OBJECT_SHIFT, strength)
        moved = np.array([_reflect(c, FRAME * e) for c, e in zip(moved, ext)])
        angle = np.deg2rad(rng.uniform(-OBJECT_ROTATION_DEG, OBJECT_ROTATION_DEG) * strength)
        warps.append(SmoothWarp.rigid(rng, height, width, obj.centre, angle, moved - np.asarray(obj.centre),
                                      OBJECT_BEND * min(strength, 1.0)))
    return background, warps


def _render_moved(scene: Scene, background: SmoothWarp, warps: list[SmoothWarp], uv: np.ndarray):
    """The moved scene at exemplar positions uv: each layer at its own source positions."""
    return render(scene, background.inverse_normalised(uv), [w.inverse_normalised(uv) for w in warps])


def _objects_pair(scene: Scene, other: Scene | None, background: SmoothWarp, warps: list[SmoothWarp],
                  height: int, width: int) -> SyntheticPair:
    grid = background.to_normalised(xy_grid(height, width))
    image, classes, instances = render(scene, grid)
    exemplar, ex_classes, ex_instances = _render_moved(other or scene, background, warps, grid)
    if other is not None:
        return SyntheticPair(image, classes, instances, exemplar, ex_classes, ex_instances, False, None, None)
    # each target pixel moves with the layer it shows (instance 0: the background)
    target = background.forward_normalised(grid)
    for index, warp in enumerate(warps):
        shown = instances == index + 1
        target[shown] = warp.forward_normalised(grid[shown])
    flow = background.to_pixels(target)
    visible = _render_moved(scene, background, warps, target)[2] == instances
    return SyntheticPair(image, classes, instances, exemplar, ex_classes, ex_instances, True,
                         flow.astype(np.float32), visible & inside(flow, height, width))


def make_pair(seed: int, index: int, height: int, width: int, *, min_objects: int = 4,
              max_objects: int = 6, warp_strength: float = 1.0, cross_scene_probability: float = 0.0,
              motion: str = "objects") -> SyntheticPair:
    """The synthetic sample `index` of dataset `seed`, rendered at height x width."""
    check_size(height, width)
    if motion not in MOTIONS:
        raise ValueError(f"synthetic scenes: motion {motion!r} is not one of {MOTIONS}")
    rng = np.random.default_rng([seed, index])
    aspect = width / height
    objects = motion == "objects"
    scene = random_scene(rng, aspect, min_objects, max_objects, distinct=objects,
                         size_scale=OBJECT_SIZE_SCALE if objects else 1.0)
    if objects:
        background, warps = object_motion(rng, scene, height, width, warp_strength)
    else:
        warp = SmoothWarp.random(rng, height, width, warp_strength)
    other = None
    if rng.uniform() < cross_scene_probability:
        other_rng = np.random.default_rng([seed, index, 1])
        other = random_scene(other_rng, aspect, min_objects, max_objects, [o.cls for o in scene.objects],
                             size_scale=OBJECT_SIZE_SCALE if objects else 1.0)
    if objects:
        return _objects_pair(scene, other, background, warps, height, width)
    grid = warp.to_normalised(xy_grid(height, width))
    image, classes, instances = render(scene, grid)
    if other is not None:
        exemplar, ex_classes, ex_instances = render(other, grid)
        return SyntheticPair(image, classes, instances, exemplar, ex_classes, ex_instances, False, None, None)
    exemplar, ex_classes, ex_instances = render(scene, warp.inverse_normalised(grid))
    flow = warp.flow()
    return SyntheticPair(image, classes, instances, exemplar, ex_classes, ex_instances, True, flow,
                         inside(flow, height, width))
