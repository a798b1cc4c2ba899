"""`python -m cocosnet_tf.data.preview`: look at what the pipeline feeds the network.

Writes `preview.png`, a contact sheet with one row per sample (label, exemplar, exemplar
label, image, flow as colour, exemplar warped by the flow; both grey where the flow is
unknown: occluded in the exemplar or outside it), the resolved `config.yaml`
and, with `--arrays`, `sample_NNNN.npz` holding every key of each sample dict.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

from cocosnet_tf.cli import add_config_arguments, config_from_args, run
from cocosnet_tf.data.geometry import xy_grid, sample_bilinear
from cocosnet_tf.fileio import save_npz, save_png
from cocosnet_tf.visualize import label_picture, titled_grid, to_uint8

COLUMNS = ("label", "exemplar", "exemplar label", "image", "flow", "warp by flow")


def flow_colour(flow: np.ndarray) -> np.ndarray:
    """Displacement (flow - own position) as colour: hue = direction, saturation = length.

    Saturation is full at a tenth of the image's longer side, so pictures of different
    samples compare.
    """
    h, w = flow.shape[:2]
    d = flow - xy_grid(h, w)
    angle = (np.arctan2(d[..., 1], d[..., 0]) / (2 * np.pi)) % 1.0
    saturation = np.clip(np.hypot(d[..., 0], d[..., 1]) / (0.1 * max(h, w)), 0, 1)
    hsv = np.stack([angle * 255, saturation * 255, np.full_like(angle, 255)], -1).astype(np.uint8)
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def sample_row(sample: dict) -> list[np.ndarray]:
    h, w = sample["image"].shape[:2]
    unknown = np.full((h, w, 3), 64, np.uint8)
    if sample["has_flow"] > 0:
        known = sample["flow_mask"] > 0
        flow = np.where(known, flow_colour(sample["flow"]), unknown)
        warped = np.where(known, to_uint8(sample_bilinear(sample["exemplar"], sample["flow"])), unknown)
    else:
        flow, warped = unknown, unknown
    return [label_picture(sample["label"]), to_uint8(sample["exemplar"]), label_picture(sample["exemplar_label"]),
            to_uint8(sample["image"]), flow, warped]


def contact_sheet(samples: list[dict]) -> np.ndarray:
    return titled_grid([sample_row(s) for s in samples], list(COLUMNS))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.data.preview", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--count", type=int, default=8, help="number of samples (default 8)")
    parser.add_argument("--out", default="runs/preview", help="output folder (default runs/preview)")
    parser.add_argument("--arrays", action="store_true", help="also write one .npz per sample")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    def body() -> None:
        from cocosnet_tf.data.pipeline import build_dataset  # TensorFlow: only once the arguments are parsed

        config = config_from_args(args)
        dataset = build_dataset(config.data, repeat=False, shuffle=False).take(args.count)
        samples = [{k: v.numpy() for k, v in s.items()} for s in dataset]
        os.makedirs(args.out, exist_ok=True)
        config.save(os.path.join(args.out, "config.yaml"))
        if args.arrays:
            for i, s in enumerate(samples):
                save_npz(os.path.join(args.out, f"sample_{i:04d}.npz"), **s)
        save_png(os.path.join(args.out, "preview.png"), contact_sheet(samples))
        print(f"wrote {len(samples)} samples to {os.path.join(args.out, 'preview.png')}"
              + (" and .npz arrays" if args.arrays else ""))

    run(body)


if __name__ == "__main__":
    main()
