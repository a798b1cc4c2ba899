"""`python -m cocosnet_tf.data.photos`: real photographs for the edges demo.

    python -m cocosnet_tf.data.photos --out data/photos

Writes the photographs that scikit-image bundles (a PyPI package, `pip install -e
'.[photos]'`; nothing is downloaded) as PNG tiles into OUT/train and OUT/heldout, the
folders `configs/edges_demo.yaml` reads. Training and held-out tiles come from different
photographs (the two views of the stereo motorcycle stay together in training), so the
held-out report measures photographs the network has never seen. Each photograph is
resized so that its shorter side is each of --scales, and cut into non-overlapping
--tile x --tile squares: 13 tiles a photograph at the defaults.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

from cocosnet_tf.cli import run
from cocosnet_tf.fileio import DataError, save_png

TRAIN = ("astronaut", "brick", "camera", "cell", "coffee", "grass", "gravel", "hubble_deep_field",
         "immunohistochemistry", "moon", "page", "retina", "text", "stereo_motorcycle")
HELDOUT = ("chelsea", "clock", "coins", "rocket")


def photographs(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """scikit-image's bundled photographs by name, as uint8 RGB (the stereo pair's two views)."""
    try:
        from skimage import data
    except ImportError as err:
        raise DataError("the photographs come from scikit-image, which is not installed: "
                        "pip install -e '.[photos]'") from err
    found = {}
    for name in names:
        image = getattr(data, name)()
        views = image[:2] if isinstance(image, tuple) else (image,)
        for i, view in enumerate(views):
            rgb = np.repeat(view[..., None], 3, axis=-1) if view.ndim == 2 else view[..., :3]
            found[name if len(views) == 1 else f"{name}_{i}"] = rgb
    return found


def tiles(image: np.ndarray, scales: list[int], tile: int) -> list[np.ndarray]:
    """Non-overlapping tile x tile squares of the image resized to each shorter side."""
    out = []
    h, w = image.shape[:2]
    for side in scales:
        ratio = side / min(h, w)
        size = (max(tile, round(w * ratio)), max(tile, round(h * ratio)))
        resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        rows, cols = resized.shape[0] // tile, resized.shape[1] // tile
        top, left = (resized.shape[0] - rows * tile) // 2, (resized.shape[1] - cols * tile) // 2
        out += [resized[top + r * tile: top + (r + 1) * tile, left + c * tile: left + (c + 1) * tile]
                for r in range(rows) for c in range(cols)]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.data.photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/photos", help="output folder (default data/photos)")
    parser.add_argument("--tile", type=int, default=64, help="tile side in pixels (default 64)")
    parser.add_argument("--scales", type=int, nargs="+", default=[128, 192],
                        help="shorter sides the photographs are resized to before tiling (default 128 192)")
    args = parser.parse_args(argv)
    if args.tile < 16 or any(s < args.tile for s in args.scales):
        parser.error("--tile must be at least 16 and every --scales at least --tile")

    def body() -> None:
        counts = {}
        for split, names in (("train", TRAIN), ("heldout", HELDOUT)):
            counts[split] = 0
            for name, image in photographs(names).items():
                for i, square in enumerate(tiles(image, args.scales, args.tile)):
                    save_png(os.path.join(args.out, split, f"{name}_{i:02d}.png"), square)
                    counts[split] += 1
        print(f"wrote {counts['train']} training and {counts['heldout']} held-out tiles to {args.out}")

    run(body)


if __name__ == "__main__":
    main()
