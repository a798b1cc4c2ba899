"""`python -m cocosnet_tf.data.pairs`: build an exemplar pair list for a folder dataset.

For every target of the configured dataset (segmentation, edges or deepfashion), find
the k most similar *other* images of the same dataset and write the official pair-list
format (`target,ref1,...,refk`, best first, paths relative to data.root), which
`data.exemplar.mode=pair_list` reads. No pretrained network is needed; similarity is the
cosine of hand-made descriptors:

  label  spatial pyramid of the semantic map (class shares on 1x1, 2x2 and 4x4 grids,
         Hellinger-mapped): exemplars whose layout matches, as CoCosNet retrieves by
         semantics. For edge maps this is only edge density per cell; prefer 'both'.
  image  colour layout (the photo at 8x8, mean-centred) plus a 4x4x4 RGB histogram.
  both   the two together, equally weighted.

Ties go to the earlier key, so the output is deterministic. Beside the list it writes
`<list name>_config.yaml`: the resolved configuration with data.exemplar set to use
the new list, ready for `--config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cocosnet_tf.cli import add_config_arguments, config_from_args, run
from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.data.exemplars import write_pair_list
from cocosnet_tf.data.folders import FolderSource
from cocosnet_tf.data.kinds import KINDS, build_source, dataset_kind
from cocosnet_tf.fileio import DataError, atomic_write_text

FEATURES = ("label", "image", "both")
PYRAMID_GRIDS = (1, 2, 4)
LAYOUT_GRID = 8
HISTOGRAM_BINS = 4  # per channel: 64 joint colour bins
CHUNK_ROWS = 1024  # similarity rows per matrix product: memory O(CHUNK_ROWS * N)
PROGRESS_EVERY = 250


def grid_means(array: np.ndarray, grid: int) -> np.ndarray:
    """Average of an [H, W, C] array over a grid x grid partition -> [grid, grid, C]."""
    h, w = array.shape[:2]
    rows = np.linspace(0, h, grid + 1).round().astype(int)
    cols = np.linspace(0, w, grid + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(array.astype(np.float64), rows[:-1], axis=0), cols[:-1], axis=1)
    areas = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return sums / areas[..., None]


def unit(vector: np.ndarray) -> np.ndarray:
    """L2-normalised; an all-zero vector (nothing to describe) stays zero."""
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def label_feature(semantic: np.ndarray) -> np.ndarray:
    pyramid = np.concatenate([grid_means(semantic, g).ravel() for g in PYRAMID_GRIDS])
    # Hellinger: the cosine of square roots compares shares, so that small classes count
    # and not only the one covering most of the picture.
    return unit(np.sqrt(np.clip(pyramid, 0.0, None)))


def image_feature(photo: np.ndarray) -> np.ndarray:
    layout = grid_means(photo.astype(np.float64) / 255.0, LAYOUT_GRID)
    layout -= layout.mean(axis=(0, 1))  # layout, not overall brightness
    bins = photo.astype(np.int64) * HISTOGRAM_BINS // 256
    joint = (bins[..., 0] * HISTOGRAM_BINS + bins[..., 1]) * HISTOGRAM_BINS + bins[..., 2]
    histogram = np.bincount(joint.ravel(), minlength=HISTOGRAM_BINS ** 3) / joint.size
    # square root as for labels, so that the background colour does not decide alone
    return np.concatenate([unit(layout.ravel()), unit(np.sqrt(histogram))]) / np.sqrt(2.0)


def describe(photo: np.ndarray, semantic: np.ndarray, by: str) -> np.ndarray:
    if by == "label":
        return label_feature(semantic)
    if by == "image":
        return image_feature(photo)
    return np.concatenate([label_feature(semantic), image_feature(photo)]) / np.sqrt(2.0)


def _progress(message: str) -> None:
    print(f"pairs: {message}", file=sys.stderr, flush=True)


def compute_features(source: FolderSource, by: str, workers: int | None = None) -> np.ndarray:
    """[N, D] float32 descriptors of source.keys, in key order."""
    workers = workers or min(4, os.cpu_count() or 1)
    n, start = len(source.keys), time.monotonic()
    rows = []
    with ThreadPoolExecutor(workers) as pool:  # decoding and resizing release the GIL
        try:
            for i, row in enumerate(pool.map(lambda key: describe(*source.read(key), by), source.keys), 1):
                rows.append(row.astype(np.float32))
                if i % PROGRESS_EVERY == 0 or i == n:
                    _progress(f"features {i}/{n} ({i / max(time.monotonic() - start, 1e-9):.1f} images/s)")
        except BaseException:
            pool.shutdown(cancel_futures=True)  # do not read the rest of the dataset first
            raise
    return np.stack(rows)


def nearest_neighbours(features: np.ndarray, k: int, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """[N, k] indices of each row's k most cosine-similar other rows, best first.

    Features are unit vectors (or zero). Equal similarities go to the lower index.
    """
    n = len(features)
    if not 1 <= k < n:
        raise ValueError(f"k must be in 1..{n - 1}, got {k}")
    result = np.empty((n, k), np.int64)
    for start in range(0, n, chunk_rows):
        sims = features[start:start + chunk_rows] @ features.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # never the target itself
        kth_best = np.partition(sims, n - k, axis=1)[:, n - k]
        for r in rows:
            # everything at least as good as the k-th best, in index order; a stable sort
            # by similarity then keeps lower indices first among equals
            candidates = np.flatnonzero(sims[r] >= kth_best[r])
            order = np.argsort(-sims[r, candidates], kind="stable")[:k]
            result[start + r] = candidates[order]
        if n > chunk_rows:
            _progress(f"similarities {min(start + chunk_rows, n)}/{n}")
    return result


def retrieve_pairs(source: FolderSource, k: int, by: str = "label") -> dict[str, list[str]]:
    """{target key: its k nearest other keys}, in key order."""
    keys = source.keys
    if not 1 <= k < len(keys):
        raise DataError(f"--k {k}: need 1 <= k < number of images, and {source.root} has {len(keys)} "
                        f"for data.dataset={source.config.dataset!r}")
    neighbours = nearest_neighbours(compute_features(source, by), k)
    return {key: [keys[j] for j in row] for key, row in zip(keys, neighbours)}


def pair_list_config(config: Config, out: str) -> Config:
    """`config` reading exemplars from the list at `out` (relative to data.root when inside it)."""
    out, root = os.path.abspath(out), os.path.abspath(config.data.root)
    inside = os.path.commonpath([out, root]) == root
    exemplar = dataclasses.replace(config.data.exemplar, mode="pair_list",
                                   pair_list=os.path.relpath(out, root) if inside else out)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, exemplar=exemplar)).validate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.data.pairs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="pair list to write, e.g. DATA_ROOT/pairs_train.txt")
    parser.add_argument("--k", type=int, default=5, help="references per target (default 5)")
    parser.add_argument("--by", choices=FEATURES, default="label", help="similarity features (default label)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")

    def body() -> None:
        config = config_from_args(args)
        if not dataset_kind(config.data).from_files:
            paired = ", ".join(name for name, kind in KINDS.items() if kind.from_files)
            raise ConfigError(f"data.dataset: the {config.data.dataset!r} scenes are generated, not files, so there "
                              f"is nothing to pair; pair lists are for {paired}")
        # Read targets only: the configured exemplars (perhaps the very list being rebuilt)
        # are not needed and may not exist yet.
        targets_only = dataclasses.replace(config.data, exemplar=dataclasses.replace(
            config.data.exemplar, mode="pseudo", pair_list=""))
        source = build_source(targets_only)
        pairs = retrieve_pairs(source, args.k, args.by)
        write_pair_list(args.out, pairs)
        config_path = os.path.splitext(args.out)[0] + "_config.yaml"
        header = f"# written by cocosnet_tf.data.pairs --k {args.k} --by {args.by}\n"
        atomic_write_text(config_path, header + pair_list_config(config, args.out).to_yaml())
        print(f"wrote {len(pairs)} targets x {args.k} references to {args.out} and the config to {config_path}")

    run(body)


if __name__ == "__main__":
    main()
