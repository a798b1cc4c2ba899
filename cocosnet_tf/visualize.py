"""Picture grids: one row per sample, one titled column per picture."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cocosnet_tf.data.labels import colourise

HEADER = 14


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[-1, 1] float image -> uint8."""
    return np.clip(np.rint((image + 1.0) * 127.5), 0, 255).astype(np.uint8)


def label_picture(semantic: np.ndarray) -> np.ndarray:
    """uint8 RGB picture of a semantic map of any kind (cocosnet_tf.data.labels.colourise)."""
    return to_uint8(np.asarray(colourise(semantic)))


def upsample_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return image[rows][:, cols]


def titled_grid(rows: list[list[np.ndarray]], columns: list[str]) -> np.ndarray:
    """uint8 pictures of one size -> one picture with a title above each column."""
    sheet = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    width = sheet.shape[1] // len(columns)
    canvas = Image.new("RGB", (sheet.shape[1], sheet.shape[0] + HEADER), (255, 255, 255))
    canvas.paste(Image.fromarray(sheet), (0, HEADER))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(columns):
        draw.text((i * width + 3, 1), name, fill=(0, 0, 0))
    return np.asarray(canvas)


def translation_grid(batch: dict, output: np.ndarray, warps: list[np.ndarray]) -> np.ndarray:
    """input, exemplar, the warp of every level (coarse to fine), output, target."""
    h, w = output.shape[1:3]
    columns = ["input", "exemplar"] + [f"warp 1/{h // x.shape[1]}" for x in warps] + ["output", "target"]
    rows = []
    for i in range(output.shape[0]):
        rows.append([label_picture(batch["label"][i]), to_uint8(batch["exemplar"][i])]
                    + [to_uint8(upsample_nearest(x[i], h, w)) for x in warps]
                    + [to_uint8(output[i]), to_uint8(batch["image"][i])])
    return titled_grid(rows, columns)
