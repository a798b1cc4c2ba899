"""`python -m cocosnet_tf.pix2pixhd_features`: the per-class feature clusters of a trained
pix2pixHD run, for choosing appearances at test time.

    python -m cocosnet_tf.pix2pixhd_features --run runs/pix2pixhd_demo --clusters 10

The run's encoder reads every training sample once (in order, not augmented); the
vector of every region that covers at least 1/64 of its image is collected under its
class, and each class's vectors are clustered with k-means (seeded by train.seed). The
centres go to RUN/pix2pixhd_clusters.npz, which translate (--feature-cluster CLASS=K)
and evaluate read.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from cocosnet_tf.cli import add_run_arguments, add_set_argument, run
from cocosnet_tf.config import ConfigError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.pix2pixhd_features",
                                     description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--clusters", type=int, default=10, help="k-means centres per class (default 10)")
    add_set_argument(parser)
    args = parser.parse_args(argv)

    def body() -> None:
        from cocosnet_tf.runs import find_checkpoint, load_run_config

        if args.clusters < 1:
            raise ConfigError(f"--clusters must be >= 1, got {args.clusters}")
        config = load_run_config(args.run, args.overrides)
        if not config.model.pix2pixhd.feature_channels:
            raise ConfigError(f"{args.run}: model.pix2pixhd.feature_channels is 0, the run has no feature encoder "
                              "to cluster")
        checkpoint = find_checkpoint(args.run, args.checkpoint)

        import numpy as np

        from cocosnet_tf.data.pipeline import build_dataset
        from cocosnet_tf.models.pix2pixhd.clusters import cluster_features, instance_features, save_clusters
        from cocosnet_tf.models.pix2pixhd.model import class_map
        from cocosnet_tf.models.pix2pixhd.run import CLUSTERS_FILE, load_pix2pixhd

        model = load_pix2pixhd(config, checkpoint)
        data = replace(config.data, phase="test", shuffle=False)  # the training samples, not augmented
        found: dict[int, list] = {}
        samples = 0
        for batch in build_dataset(data, config.evaluate.batch_size, repeat=False):
            label, image = batch["label"], batch["image"]
            classes = class_map(label, model.classes).numpy()
            features = model.encode(image, label).numpy()
            for label_id, vectors in instance_features(features, classes, classes).items():
                found.setdefault(label_id, []).append(vectors)
            samples += len(classes)
        vectors = {label_id: np.concatenate(parts) for label_id, parts in found.items()}
        if not vectors:
            raise ConfigError(f"{args.run}: no region of the {samples} training samples covers 1/64 of its image")
        centres = cluster_features(vectors, args.clusters, seed=config.train.seed)
        path = os.path.join(args.run, CLUSTERS_FILE)
        save_clusters(path, centres)
        print(f"{samples} training samples; clusters per class (regions): " + ", ".join(
            f"{label_id}: {len(centres[label_id])} ({len(vectors[label_id])})" for label_id in sorted(centres)))
        print(f"wrote {path}")

    run(body)


if __name__ == "__main__":
    main()
