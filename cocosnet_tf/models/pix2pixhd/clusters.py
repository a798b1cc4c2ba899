"""Per-class clusters of instance features, for choosing appearances at test time.

After training, the encoder's vector of every large enough instance is collected per
semantic class and clustered with k-means; the centres go to an .npz file (one array
per class, "class_<id>"). At test time each instance of a class gets the centre chosen
for its class, which is how pix2pixHD offers several looks for one label map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# pix2pixHD keeps instances covering at least 1/64 of the image
MIN_FRACTION = 1 / 64
CLUSTERS = 10  # the official n_clusters
KEY_PREFIX = "class_"


def instance_classes(instances: np.ndarray, labels: np.ndarray):
    """Yield (image index, instance mask, class id) for every instance of every image; an
    instance's class is the most frequent label under it."""
    if instances.shape != labels.shape or instances.ndim != 3:
        raise ValueError(f"instances and labels must be (B, H, W) maps of one shape, got {instances.shape} "
                         f"and {labels.shape}")
    for b in range(instances.shape[0]):
        for instance in np.unique(instances[b]):
            mask = instances[b] == instance
            yield b, mask, int(np.bincount(labels[b][mask].astype(np.int64)).argmax())


def instance_features(features: np.ndarray, instances: np.ndarray, labels: np.ndarray,
                      min_fraction: float = MIN_FRACTION) -> dict[int, np.ndarray]:
    """The encoder's output (B, H, W, C) -> {class id: (n, C) one vector per instance that
    covers at least min_fraction of its image}."""
    features, instances, labels = np.asarray(features), np.asarray(instances), np.asarray(labels)
    if features.shape[:3] != instances.shape:
        raise ValueError(f"features {features.shape} and instances {instances.shape} differ in size")
    found: dict[int, list] = {}
    for b, mask, label in instance_classes(instances, labels):
        if mask.sum() >= min_fraction * mask.size:
            found.setdefault(label, []).append(features[b][mask].mean(axis=0))
    return {label: np.stack(vectors) for label, vectors in found.items()}


def kmeans(points: np.ndarray, clusters: int, seed: int = 0, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means from a k-means++ start drawn with `seed` (the same points and seed
    give the same centres); min(clusters, len(points)) centres, (k, C)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or not len(points) or clusters < 1:
        raise ValueError(f"kmeans needs (n >= 1, C) points and clusters >= 1, got {points.shape} and {clusters}")
    rng = np.random.default_rng(seed)
    k = min(clusters, len(points))
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        distance = np.min([np.sum((points - c) ** 2, axis=1) for c in centres], axis=0)
        # duplicates leave nothing to spread over: any point will do
        p = distance / distance.sum() if distance.sum() > 0 else None
        centres.append(points[rng.choice(len(points), p=p)])
    centres = np.stack(centres)
    assignment = None
    for _ in range(iterations):
        nearest = np.argmin(((points[:, None] - centres[None]) ** 2).sum(axis=-1), axis=1)
        if assignment is not None and np.array_equal(nearest, assignment):
            break
        assignment = nearest
        for j in range(k):
            members = points[assignment == j]
            if len(members):  # an emptied cluster keeps its centre
                centres[j] = members.mean(axis=0)
    return centres


def cluster_features(features: dict[int, np.ndarray], clusters: int = CLUSTERS, seed: int = 0) -> dict[int, np.ndarray]:
    """{class id: instance vectors} -> {class id: (k, C) centres}."""
    return {label: kmeans(vectors, clusters, seed) for label, vectors in features.items() if len(vectors)}


def save_clusters(path, centres: dict[int, np.ndarray]) -> None:
    np.savez(Path(path), **{f"{KEY_PREFIX}{label}": np.asarray(c, dtype=np.float32) for label, c in centres.items()})


def load_clusters(path) -> dict[int, np.ndarray]:
    with np.load(Path(path)) as data:
        if not all(key.startswith(KEY_PREFIX) for key in data.files):
            raise ValueError(f"{path} is not a cluster file: its arrays must be named {KEY_PREFIX}<id>, got "
                             f"{sorted(data.files)}")
        return {int(key[len(KEY_PREFIX):]): data[key] for key in data.files}


def feature_map(instances: np.ndarray, labels: np.ndarray, centres: dict[int, np.ndarray],
                choices: dict[int, int]) -> np.ndarray:
    """(B, H, W, C) float32: every instance of class c holds centres[c][choices.get(c, 0)];
    instances of classes without clusters hold zeros."""
    instances, labels = np.asarray(instances), np.asarray(labels)
    if not centres:
        raise ValueError("feature_map needs at least one class's cluster centres")
    channels = next(iter(centres.values())).shape[1]
    out = np.zeros(instances.shape + (channels,), dtype=np.float32)
    for b, mask, label in instance_classes(instances, labels):
        if label in centres:
            choice = choices.get(label, 0)
            if not 0 <= choice < len(centres[label]):
                raise ValueError(f"class {label} has {len(centres[label])} clusters, cluster {choice} was chosen")
            out[b][mask] = centres[label][choice]
    return out
