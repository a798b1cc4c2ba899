"""The training loop behind `python -m cocosnet_tf.train` (its docstring describes the
run directory): devices and strategy, the networks and optimisers, checkpoints, logs and
sample grids. Imported only once the command has parsed its arguments: it loads
TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cocosnet_tf.checkpoints import first_line, record_state
from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.data.pipeline import build_dataset, distributed_dataset
from cocosnet_tf.fileio import save_png
from cocosnet_tf.heldout import heldout_data
from cocosnet_tf.memory import MemoryReleaser
from cocosnet_tf.model import CoCosNet
from cocosnet_tf.visualize import translation_grid

log = logging.getLogger("cocosnet_tf.train")


class NonFiniteLossError(RuntimeError):
    pass


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


def network_differences(before: Config, after: Config) -> list[str]:
    """The settings that shape the networks' weights and differ between two configs."""
    differ = [f"model.{key} ({value} -> {getattr(after.model, key)})"
              for key, value in vars(before.model).items() if getattr(after.model, key) != value]
    if before.data.semantic_nc != after.data.semantic_nc:
        differ.append(f"the input channels of the data section ({before.data.semantic_nc} -> "
                      f"{after.data.semantic_nc})")
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
            self.model = CoCosNet(config, config.data.semantic_nc)
            self.model.build_all(h, w)
            self.model.setup_training()
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
        self.stop_requested = False
        self._samples = None  # the held-out batch of the sample grids, read once

    def restore(self, path: str, run_config: Config) -> None:
        """Every variable from `path`, or a ConfigError naming the settings that differ from
        the run's (a changed width gives weights of other shapes)."""
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            # the command ends with this error; the failed restore's pending values would each
            # log a warning when freed at exit, burying it
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
            differ = network_differences(run_config, self.config)
            if not differ:
                raise ConfigError(f"--resume: {path} does not fit the networks of this config: "
                                  f"{first_line(err)}") from err
            raise ConfigError(f"--resume: {path} does not fit the networks of this config, which differs from "
                              f"the run's config.yaml in {', '.join(differ)}: resume without changing "
                              f"{'it' if len(differ) == 1 else 'them'}, or train new networks in another "
                              "--run-dir") from err
        print(f"resumed from {path} at step {int(self.step)}", flush=True)

    def _request_stop(self, signum, frame):
        log.warning("signal %d: stopping after this step and saving a checkpoint", signum)
        self.stop_requested = True

    def make_step(self):
        strategy = self.strategy

        @tf.function
        def step(iterator):
            losses = strategy.run(self.model.train_step, args=(next(iterator),))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in losses.items()}

        return step

    def save(self) -> None:
        path = self.manager.save(checkpoint_number=int(self.step))
        if not self.chief:
            shutil.rmtree(Path(path).parent, ignore_errors=True)
        else:
            print(f"checkpoint {path}", flush=True)

    def train(self) -> dict:
        t = self.config.train
        handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        step_fn = self.make_step()
        iterator = iter(self.dataset)
        saved_step, losses = int(self.step), {}
        every = f"every {t.log_every} steps" if t.log_every > 1 else "every step"
        print(f"tracing the training step: the first step builds its graph, which takes a while; then a line "
              f"{every}", flush=True)
        started = time.perf_counter()
        steady = None  # (step, time) after the first step: the rate and ETA leave tracing out
        try:
            with MemoryReleaser(self.config.runtime.release_memory):
                while int(self.step) < t.steps and not self.stop_requested:
                    losses = {k: float(v) for k, v in step_fn(iterator).items()}
                    bad = [k for k, v in losses.items() if not np.isfinite(v)]
                    if bad:
                        values = ", ".join(f"{k}={losses[k]}" for k in bad)
                        raise NonFiniteLossError(
                            f"non-finite loss at step {int(self.step) + 1}: {values}"
                            f"; the last good checkpoint is {self.manager.latest_checkpoint}")
                    self.step.assign_add(1)
                    step = int(self.step)
                    if steady is None:
                        steady = (step, time.perf_counter())
                        self.log(step, losses, f"first step {steady[1] - started:.0f} s (tracing included)")
                    elif step % t.log_every == 0 or step == t.steps:
                        rate = (step - steady[0]) / max(time.perf_counter() - steady[1], 1e-9)
                        eta = (t.steps - step) / max(rate, 1e-9)
                        left = f"{eta:.0f} s" if eta < 90 else f"{eta / 60:.1f} min"
                        self.log(step, losses, f"{rate:.2f} steps/s  ETA {left}", rate)
                    if self.chief and (step % t.sample_every == 0 or step == t.steps):
                        self.write_samples(step)
                    if step % t.checkpoint_every == 0:
                        self.save()
                        saved_step = step
                if int(self.step) > saved_step:
                    self.save()
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
        return losses

    def log(self, step: int, losses: dict, speed: str, rate: float | None = None) -> None:
        shown = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
        print(f"step {step}/{self.config.train.steps}  {speed}  {shown}", flush=True)
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for k, v in losses.items():
                    tf.summary.scalar(f"loss/{k}", v)
                # np.asarray: a mirrored learning rate has no __float__
                tf.summary.scalar("lr/generator", float(np.asarray(self.model.g_optimizer.learning_rate)))
                tf.summary.scalar("lr/discriminator", float(np.asarray(self.model.d_optimizer.learning_rate)))
                if rate is not None:
                    tf.summary.scalar("speed/steps_per_s", rate)

    def sample_batch(self) -> dict:
        if self._samples is None:
            batch = next(iter(build_dataset(heldout_data(self.config), min(4, self.config.train.batch_size),
                                            repeat=False)))
            self._samples = {k: v.numpy() for k, v in batch.items()}
        return self._samples

    def write_samples(self, step: int) -> None:
        batch = self.sample_batch()
        out = self.model(batch["label"], batch["exemplar"], batch["exemplar_label"])
        grid = translation_grid(batch, out["image"].numpy(), [w.numpy() for w in out["warps"]])
        save_png(self.run_dir / "samples" / f"step_{step:07d}.png", grid)
        with self.writer.as_default(step=step):
            tf.summary.image("samples", grid[None], step=step)


def weights_fingerprint(variables) -> str:
    """SHA-256 of the variables' values, in order (this worker's copy)."""
    digest = hashlib.sha256()
    for v in variables:
        digest.update(np.ascontiguousarray(v.numpy()).tobytes())
    return digest.hexdigest()[:16]
