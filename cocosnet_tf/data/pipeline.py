"""tf.data pipelines over a `Source`: shard, shuffle, parallel load, augment, batch.

The stream is deterministic for a given `data.seed`: the index permutation is seeded,
loading is a pure function of (index, epoch), and augmentation draws from stateless
random ops seeded by (seed, position in the stream). `distributed_dataset` feeds a
`tf.distribute` strategy through `distribute_datasets_from_function`, one shard per
input pipeline (worker).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import tensorflow as tf

from cocosnet_tf.config import DataConfig
from cocosnet_tf.data.kinds import build_source
from cocosnet_tf.data.sources import SAMPLE_KEYS, Source
from cocosnet_tf.fileio import DataError

log = logging.getLogger(__name__)

IMAGE_KEYS = ("image", "exemplar")
LABEL_KEYS = ("label", "exemplar_label")
FLOW_KEYS = ("flow", "flow_mask")


class _Loader:
    """Calls `source.load` from tf.data worker threads; counts skipped samples."""

    def __init__(self, source: Source, skip_bad: bool, seed: int):
        self.source, self.skip_bad, self.seed = source, skip_bad, seed
        self.skipped = 0
        self._lock = threading.Lock()
        h, w = source.height, source.width
        c = source.semantic_nc
        self.placeholder = {
            "label": np.zeros((h, w, c), np.float32), "image": np.zeros((h, w, 3), np.float32),
            "exemplar": np.zeros((h, w, 3), np.float32), "exemplar_label": np.zeros((h, w, c), np.float32),
            "self_ref": np.float32(0), "flow": np.zeros((h, w, 2), np.float32),
            "flow_mask": np.zeros((h, w, 1), np.float32), "has_flow": np.float32(0),
        }

    def __call__(self, index, epoch):
        index, epoch = int(index), int(epoch)
        try:
            sample = self.source.load(index, seed=self.seed * 1_000_003 + epoch)
            self._check(sample, index)
            valid = True
        except DataError as err:
            if not self.skip_bad:
                raise
            with self._lock:
                self.skipped += 1
                count = self.skipped
            log.warning("skipped %s (%d skipped so far): %s", self.source.name(index), count, err)
            sample, valid = self.placeholder, False
        return tuple(sample[k] for k in SAMPLE_KEYS) + (np.bool_(valid),)

    def _check(self, sample: dict, index: int) -> None:
        for key, ref in self.placeholder.items():
            if sample[key].shape != ref.shape:
                raise DataError(f"{self.source.name(index)}: {key} has shape {sample[key].shape}, "
                                f"expected {ref.shape}")
            if not np.all(np.isfinite(sample[key])):
                raise DataError(f"{self.source.name(index)}: {key} holds non-finite values")


def _load_fn(loader: _Loader):
    shapes = {k: list(np.shape(v)) for k, v in loader.placeholder.items()}

    def load(position, index, epoch):
        out = tf.numpy_function(loader, [index, epoch], [tf.float32] * len(SAMPLE_KEYS) + [tf.bool],
                                stateful=False)
        sample = {k: tf.ensure_shape(v, shapes[k]) for k, v in zip(SAMPLE_KEYS, out[:-1])}
        sample["index"] = index
        return position, sample, tf.ensure_shape(out[-1], [])

    return load


def augment(sample: dict, seed: tf.Tensor, config: DataConfig) -> dict:
    """Random scale, crop and flip, the same for every image, map and the flow; in the
    test phase only a centre crop.

    `flow` holds exemplar positions; the exemplar undergoes the same transform, so a
    value transforms like a position: x -> (x + 0.5) * scale - 0.5, minus the crop
    offset, mirrored by a flip. `flow_mask` is resized bilinearly and kept only where
    every pixel it blends was known (a blend of two layers' flows is no flow), and
    loses the points the crop moved outside the exemplar.
    """
    (height, width), (crop_h, crop_w) = config.load_hw, config.crop_size
    out = dict(sample)
    low, high = config.scale_range
    training = config.phase == "train"
    if training and (low, high) != (1.0, 1.0):
        scale = tf.random.stateless_uniform([], seed, low, high)
        new_h = tf.maximum(crop_h, tf.cast(tf.round(height * scale), tf.int32))
        new_w = tf.maximum(crop_w, tf.cast(tf.round(width * scale), tf.int32))
        size = tf.stack([new_h, new_w])
        for key in IMAGE_KEYS + FLOW_KEYS:
            out[key] = tf.image.resize(out[key], size, method="bilinear")
        for key in LABEL_KEYS:
            out[key] = tf.image.resize(out[key], size, method="nearest")
        out["flow_mask"] = tf.cast(out["flow_mask"] > 0.999, tf.float32)
        ratio = tf.stack([tf.cast(new_w, tf.float32) / width, tf.cast(new_h, tf.float32) / height])
        out["flow"] = (out["flow"] + 0.5) * ratio - 0.5
    else:
        new_h, new_w = tf.constant(height), tf.constant(width)
    if training:
        crop_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        top = tf.random.stateless_uniform([], crop_seed, 0, new_h - crop_h + 1, dtype=tf.int32)
        left = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 2), 0,
                                           new_w - crop_w + 1, dtype=tf.int32)
    else:  # evaluation sees the centre, unflipped, at the load scale
        top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
    for key in IMAGE_KEYS + LABEL_KEYS + FLOW_KEYS:
        out[key] = out[key][top: top + crop_h, left: left + crop_w]
    out["flow"] = out["flow"] - tf.cast(tf.stack([left, top]), tf.float32)
    x, y = out["flow"][..., 0:1], out["flow"][..., 1:2]
    within = (x >= 0) & (x <= crop_w - 1) & (y >= 0) & (y <= crop_h - 1)
    out["flow_mask"] = out["flow_mask"] * tf.cast(within, tf.float32)
    if config.flip and training:
        flip_seed = tf.random.experimental.stateless_fold_in(seed, 3)
        do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        for key in IMAGE_KEYS + LABEL_KEYS + FLOW_KEYS:
            out[key] = tf.cond(do_flip, lambda k=key: tf.reverse(out[k], [1]), lambda k=key: out[k])
        mirrored = tf.stack([crop_w - 1 - out["flow"][..., 0], out["flow"][..., 1]], axis=-1)
        out["flow"] = tf.where(do_flip, mirrored, out["flow"])
    out["flow"] = out["flow"] * out["has_flow"]  # unknown flow stays exactly zero
    for key in IMAGE_KEYS + LABEL_KEYS + FLOW_KEYS:
        out[key] = tf.ensure_shape(out[key], [crop_h, crop_w, sample[key].shape[-1]])
    return out


def _needs_augment(config: DataConfig) -> bool:
    if list(config.load_hw) != config.crop_size:
        return True
    return config.phase == "train" and (config.flip or tuple(config.scale_range) != (1.0, 1.0))


def build_dataset(config: DataConfig, batch_size: int | None = None, *, repeat: bool = True,
                  shuffle: bool | None = None, input_context: tf.distribute.InputContext | None = None,
                  source: Source | None = None, start_step: int = 0) -> tf.data.Dataset:
    """The sample stream of `config`; batched when `batch_size` is given.

    With an `input_context` (from `distribute_datasets_from_function`), the index is
    sharded by input pipeline and `batch_size` is the global batch, split per replica.
    `start_step` resumes the stream after that many global batches: the skipped
    positions are only indices, nothing is loaded for them.
    """
    source = source or build_source(config)
    n = len(source)
    indices = tf.data.Dataset.range(n)
    per_pipeline = batch_size or 1  # samples this pipeline reads per global batch
    worker = 0  # each worker draws its own permutation and augmentations
    if input_context is not None:
        if input_context.num_input_pipelines > n:
            raise DataError(f"{n} samples cannot be sharded over {input_context.num_input_pipelines} workers")
        indices = indices.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        worker = input_context.input_pipeline_id
        per_pipeline //= input_context.num_input_pipelines
        if batch_size is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
    shard_size = int(indices.cardinality())
    stream_seed = config.seed * 1009 + worker
    if config.shuffle if shuffle is None else shuffle:
        indices = indices.shuffle(shard_size, seed=stream_seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    # position in the stream -> (epoch, index): the epoch varies per-epoch random choices
    stream = indices.enumerate().map(lambda pos, idx: (pos, idx, pos // shard_size)).skip(start_step * per_pipeline)
    loader = _Loader(source, config.on_bad_sample == "skip", config.seed)
    parallel = tf.data.AUTOTUNE if config.num_parallel_calls == -1 else config.num_parallel_calls
    ds = stream.map(_load_fn(loader),
                    num_parallel_calls=parallel, deterministic=True)
    if config.on_bad_sample == "skip":
        ds = ds.filter(lambda pos, sample, valid: valid)
    if _needs_augment(config):
        def apply(pos, sample, valid):
            seed = tf.stack([tf.constant(stream_seed, tf.int64), pos])
            return augment(sample, seed, config)
        ds = ds.map(apply, num_parallel_calls=parallel, deterministic=True)
    else:
        ds = ds.map(lambda pos, sample, valid: sample)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=repeat)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.loader = loader  # exposes the skipped-sample count
    return ds


def distributed_dataset(strategy: tf.distribute.Strategy, config: DataConfig, global_batch: int,
                        **kwargs) -> tf.distribute.DistributedDataset:
    """Per-replica batches for `strategy`, each worker reading its own shard."""
    if global_batch % strategy.num_replicas_in_sync:
        raise ValueError(f"train.batch_size {global_batch} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas")
    return strategy.distribute_datasets_from_function(
        lambda context: build_dataset(config, global_batch, input_context=context, **kwargs))
