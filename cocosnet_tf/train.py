"""`python -m cocosnet_tf.train`: train CoCosNet v2.

    python -m cocosnet_tf.train                          # configs/demo.yaml, synthetic data
    python -m cocosnet_tf.train --config configs/ade20k_256.yaml --run-dir runs/ade
    python -m cocosnet_tf.train --run-dir runs/ade --resume

The run directory holds config.yaml (resolved), checkpoints/ (model, both optimisers,
step; the data position is the step), logs/ (TensorBoard), samples/ (PNG grids) and,
at the end, heldout.json (correspondence and warp quality on held-out pairs with true
flow, when the data has it). Checkpoints are written every train.checkpoint_every steps
and on exit, including Ctrl-C and SIGTERM (the running step finishes first). A
non-finite loss stops training with an error; the last good checkpoint stays.

Strategy: MultiWorkerMirroredStrategy when TF_CONFIG names several workers,
MirroredStrategy over the visible GPUs (or over train.logical_cpus logical CPUs), the
default strategy otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cocosnet_tf.cli import add_config_arguments, config_from_args, run
from cocosnet_tf.config import Config, ConfigError, load_config
from cocosnet_tf.data.pipeline import build_dataset, distributed_dataset
from cocosnet_tf.evaluate import heldout_data, heldout_report
from cocosnet_tf.fileio import atomic_write_text, save_png
from cocosnet_tf.losses.vgg import find_weights
from cocosnet_tf.memory import MemoryReleaser
from cocosnet_tf.model import CoCosNet, uses_vgg
from cocosnet_tf.visualize import translation_grid

log = logging.getLogger("cocosnet_tf.train")
CHECKPOINTS_KEPT = 3


class NonFiniteLossError(RuntimeError):
    pass


# ---------------------------------------------------------------------------- setup
def configure_devices(config: Config) -> None:
    """Split the CPU into logical devices (must run before TensorFlow initialises them)."""
    n = config.train.logical_cpus
    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def choose_strategy(config: Config):
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if len(tf_config.get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if config.train.logical_cpus > 1:
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.get_strategy()


def cluster_task(strategy) -> tuple[str | None, int]:
    """(task type, task id) of this process in a multi-worker cluster; (None, 0) alone."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy) -> bool:
    task_type, task_id = cluster_task(strategy)
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, config: Config, run_dir: Path, resume: bool):
        self.config, self.run_dir = config, run_dir
        keras.mixed_precision.set_dtype_policy(config.train.mixed_precision)
        self.strategy = choose_strategy(config)
        self.chief = is_chief(self.strategy)
        print(f"strategy: {type(self.strategy).__name__}, replicas: {self.strategy.num_replicas_in_sync}", flush=True)
        h, w = config.data.crop_size
        keras.utils.set_random_seed(config.train.seed)  # the same initial weights on every worker and rerun
        if config.train.deterministic:
            tf.config.experimental.enable_op_determinism()
        # a host-side counter: outside the scope it stays a plain variable, not a mirrored one
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        with self.strategy.scope():
            self.model = CoCosNet(config, config.data.semantic_nc)
            self.model.build_all(h, w)
            self.model.setup_training()
            self.checkpoint = tf.train.Checkpoint(model=self.model, g_optimizer=self.model.g_optimizer,
                                                  d_optimizer=self.model.d_optimizer, step=self.step)
        # every worker saves (saving is collective); only the chief's copy is kept
        directory = run_dir / "checkpoints" if self.chief else run_dir / f".worker_{cluster_task(self.strategy)[1]}"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=CHECKPOINTS_KEPT)
        if resume:
            if self.manager.latest_checkpoint is None:
                raise ConfigError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("resumed from %s at step %d", self.manager.latest_checkpoint, int(self.step))
        self.dataset = distributed_dataset(self.strategy, config.data, config.train.batch_size,
                                           start_step=int(self.step))
        self.writer = tf.summary.create_file_writer(str(run_dir / "logs")) if self.chief else None
        self.stop_requested = False
        self._samples = None  # the held-out batch of the sample grids, read once

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
            log.info("checkpoint %s", path)

    def train(self) -> dict:
        t = self.config.train
        handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        step_fn = self.make_step()
        iterator = iter(self.dataset)
        start_step, start_time = int(self.step), time.perf_counter()
        saved_step, losses = start_step, {}
        try:
            with MemoryReleaser(t.release_memory):
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
                    if step % t.log_every == 0 or step == t.steps:
                        self.log(step, losses, start_step, start_time)
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

    def log(self, step: int, losses: dict, start_step: int, start_time: float) -> None:
        elapsed = time.perf_counter() - start_time
        rate = (step - start_step) / max(elapsed, 1e-9)
        eta = (self.config.train.steps - step) / max(rate, 1e-9)
        shown = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
        print(f"step {step}/{self.config.train.steps}  {rate:.2f} steps/s  ETA {eta / 60:.1f} min  {shown}",
              flush=True)
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for k, v in losses.items():
                    tf.summary.scalar(f"loss/{k}", v)
                # np.asarray: a mirrored learning rate has no __float__
                tf.summary.scalar("lr/generator", float(np.asarray(self.model.g_optimizer.learning_rate)))
                tf.summary.scalar("lr/discriminator", float(np.asarray(self.model.d_optimizer.learning_rate)))
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


def prepare_run_dir(config: Config, run_dir: Path, resume: bool, overrides: list[str]) -> Config:
    """The config to train with; refuses to train over an existing run without --resume."""
    saved = run_dir / "config.yaml"
    if resume:
        if not saved.is_file():
            raise ConfigError(f"--resume: {saved} does not exist")
        config = load_config(str(saved), overrides)
    elif (run_dir / "checkpoints").exists():
        raise ConfigError(f"{run_dir} already holds a run: pass --resume to continue it, or another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(saved)
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.train", description=__doc__.split("\n\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--run-dir", default=None, help="output directory (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    args = parser.parse_args(argv)

    def body() -> None:
        config = config_from_args(args)
        name = Path(args.config).stem if args.config else "demo"
        run_dir = Path(args.run_dir or Path("runs") / name)
        if uses_vgg(config):  # fail before anything is written
            find_weights(config.losses.vgg_weights)
        config = prepare_run_dir(config, run_dir, args.resume, args.overrides)
        configure_devices(config)
        trainer = Trainer(config, run_dir, args.resume)
        try:
            trainer.train()
        except NonFiniteLossError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(3)
        # every worker prints it: replicas and workers must end with the same weights
        print(f"weights fingerprint: {weights_fingerprint(trainer.model.variables)}", flush=True)
        if trainer.chief and int(trainer.step) >= config.train.steps:
            report = heldout_report(trainer.model, config)
            atomic_write_text(run_dir / "heldout.json", json.dumps(report, indent=2) + "\n")
            print("held-out:", json.dumps(report))

    run(body)


if __name__ == "__main__":
    main()
