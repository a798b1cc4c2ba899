"""The training behind `python -m cocosnet_tf.train` (its docstring describes the run
directory): devices and strategy, the networks and optimisers, resuming, and `fit` with
the command's callbacks (cocosnet_tf.callbacks: checkpoints, progress and TensorBoard
scalars, sample grids, the held-out report, stopping on a signal or a non-finite loss).
Imported only once the command has parsed its arguments: it loads TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cocosnet_tf.callbacks import (Checkpoints, CountSteps, HeldoutReport, Progress, SampleGrids, StopOnNonFiniteLoss,
                                   StopOnSignal)
from cocosnet_tf.checkpoints import first_line, record_state
from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.data.pipeline import distributed_dataset
from cocosnet_tf.memory import MemoryReleaser
from cocosnet_tf.models.registry import model_kind

# ---------------------------------------------------------------------------- setup
def configure_devices(config: Config) -> None:
    """Split the CPU into logical devices (must run before TensorFlow initialises them)."""
    n = config.train.logical_cpus
    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def choose_strategy(config: Config) -> tuple[tf.distribute.Strategy, str]:
    """The distribution strategy, and the devices it trains on in words."""
    workers = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy(), f"{len(workers)} workers"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), f"{len(gpus)} GPUs"
    if config.train.logical_cpus > 1:
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus), f"{len(cpus)} logical CPUs"
    return tf.distribute.get_strategy(), "one GPU" if gpus else "the CPU"


def cluster_task(strategy) -> tuple[str | None, int]:
    """(task type, task id) of this process in a multi-worker cluster; (None, 0) alone."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy) -> bool:
    task_type, task_id = cluster_task(strategy)
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


def checkpoint_differences(before: Config, after: Config) -> list[str]:
    """The settings that shape what a checkpoint holds and differ between two configs: the
    networks' weights, and train.mixed_precision (float64 weights; mixed_float16 keeps a
    loss scale in each optimiser's state)."""
    differ = [f"model.{key} ({value} -> {getattr(after.model, key)})"
              for key, value in vars(before.model).items() if getattr(after.model, key) != value]
    if before.data.semantic_nc != after.data.semantic_nc:
        differ.append(f"the input channels of the data section ({before.data.semantic_nc} -> "
                      f"{after.data.semantic_nc})")
    if before.train.mixed_precision != after.train.mixed_precision:
        differ.append(f"train.mixed_precision ({before.train.mixed_precision} -> {after.train.mixed_precision})")
    return differ


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """`resume_from`: a checkpoint prefix to continue from, written with `run_config`."""

    def __init__(self, config: Config, run_dir: Path, resume_from: str | None = None,
                 run_config: Config | None = None):
        self.config, self.run_dir = config, run_dir
        keras.mixed_precision.set_dtype_policy(config.train.mixed_precision)
        self.strategy, devices = choose_strategy(config)
        self.chief = is_chief(self.strategy)
        print(f"devices: {devices} (replicas: {self.strategy.num_replicas_in_sync})", flush=True)
        h, w = config.data.crop_size
        keras.utils.set_random_seed(config.train.seed)  # the same initial weights on every worker and rerun
        if config.runtime.deterministic:
            tf.config.experimental.enable_op_determinism()
            # Grappler's graph rewrites differ from process to process: two runs of the
            # demo's networks part from the first step with them and agree without them
            tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
        # a host-side counter: outside the scope it stays a plain variable, not a mirrored one
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        print("building the networks and optimisers...", flush=True)
        with self.strategy.scope():
            self.model = model_kind(config).build(config)
            self.model.build_all(h, w)
            self.model.compile()
            self.checkpoint = tf.train.Checkpoint(model=self.model, g_optimizer=self.model.g_optimizer,
                                                  d_optimizer=self.model.d_optimizer, step=self.step)
        folder = run_dir / "checkpoints"
        if resume_from is not None:
            self.restore(resume_from, run_config or config)
            if self.chief:
                record_state(str(folder))
        # every worker saves (saving is collective); only the chief's copy is kept
        directory = folder if self.chief else run_dir / f".worker_{cluster_task(self.strategy)[1]}"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory),
                                                  max_to_keep=config.train.keep_checkpoints)
        self.dataset = distributed_dataset(self.strategy, config.data, config.train.batch_size,
                                           start_step=int(self.step))
        self.writer = tf.summary.create_file_writer(str(run_dir / "logs")) if self.chief else None
        self.heldout = HeldoutReport(config, run_dir, self.step)
        self.progress = Progress(self.step, config.train.steps, config.train.log_every, self.writer)

    def restore(self, path: str, run_config: Config) -> None:
        """Every variable from `path`, or a ConfigError naming the settings that differ from
        the run's (a changed width gives weights of other shapes)."""
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            # the command ends with this error; the failed restore's pending values would each
            # log a warning when freed at exit, burying it
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
            differ = checkpoint_differences(run_config, self.config)
            if not differ:
                raise ConfigError(f"--resume: {path} does not fit the networks of this config: "
                                  f"{first_line(err)}") from err
            raise ConfigError(f"--resume: {path} does not fit the networks of this config, which differs from "
                              f"the run's config.yaml in {', '.join(differ)}: resume without changing "
                              f"{'it' if len(differ) == 1 else 'them'}, or train new networks in another "
                              "--run-dir") from err
        print(f"resumed from {path} at step {int(self.step)}", flush=True)

    def callbacks(self) -> list[keras.callbacks.Callback]:
        """fit's callbacks but the signal handling, in the order they must see each step."""
        t, step, chief = self.config.train, self.step, self.chief
        return [StopOnNonFiniteLoss(step, lambda: self.manager.latest_checkpoint), CountSteps(step),
                self.progress,
                *([SampleGrids(self.config, self.run_dir, step, self.writer)] if chief else []),
                Checkpoints(self.manager, step, t.checkpoint_every, chief), *([self.heldout] if chief else [])]

    def train(self) -> None:
        """fit the steps left; with none left, only the held-out report."""
        t = self.config.train
        left = t.steps - int(self.step)
        if left <= 0:
            # fit takes steps_per_epoch=0 as "until the data ends", and ours never ends
            if self.chief:
                self.heldout.set_model(self.model)
                self.heldout.on_train_end()
            return
        every = f"every {t.log_every} steps" if t.log_every > 1 else "every step"
        then = "a progress bar" if self.progress.draw_bar else f"a line {every}"
        print(f"tracing the training step: the first step builds its graph, which takes a while; then {then}",
              flush=True)
        stop = StopOnSignal()
        try:
            with MemoryReleaser(self.config.runtime.release_memory):
                self.model.fit(self.dataset, epochs=1, steps_per_epoch=left, shuffle=False, verbose=0,
                               callbacks=[*self.callbacks(), stop])
        finally:
            # when fit ended by an exception, on_train_end did not
            stop.restore()
            self.progress.close()


def weights_fingerprint(variables) -> str:
    """SHA-256 of the variables' values, in order (this worker's copy)."""
    digest = hashlib.sha256()
    for v in variables:
        digest.update(np.ascontiguousarray(v.numpy()).tobytes())
    return digest.hexdigest()[:16]
