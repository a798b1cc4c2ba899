"""The training command's `keras.Model.fit` callbacks.

The command fits the steps left in one call; every callback keys on the run's step
counter (`step`, a host-side tf.Variable that the checkpoints hold), not on fit's batch
index, which restarts at 0 in a resumed run. fit calls them in list order after each
step; Trainer.callbacks lists them so that a non-finite loss is caught before the step
is counted, and the step is counted before it is logged, drawn or saved.
docs/design.md says why these are the command's own rather than Keras' TensorBoard,
TerminateOnNaN or BackupAndRestore.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import rich.progress
import rich.text
import tensorflow as tf

from cocosnet_tf.config import Config
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.fileio import atomic_write_text, save_png
from cocosnet_tf.heldout import HELDOUT_PAIRS, heldout_data, heldout_report
from cocosnet_tf.models.registry import model_kind
from cocosnet_tf.visualize import translation_grid

log = logging.getLogger("cocosnet_tf.train")


class NonFiniteLossError(RuntimeError):
    pass


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise NonFiniteLossError naming the step, the losses and the last good checkpoint
    when a step returns a NaN or infinite loss. Raising ends fit without on_train_end, so
    the diverged weights are never saved."""

    def __init__(self, step: tf.Variable, last_checkpoint: Callable[[], str | None]):
        super().__init__()
        self.step, self.last_checkpoint = step, last_checkpoint

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: v for k, v in (logs or {}).items() if not np.isfinite(v)}
        if bad:
            values = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise NonFiniteLossError(f"non-finite loss at step {int(self.step) + 1}: {values}"
                                     f"; the last good checkpoint is {self.last_checkpoint()}")


class CountSteps(keras.callbacks.Callback):
    def __init__(self, step: tf.Variable):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        self.step.assign_add(1)


class Progress(keras.callbacks.Callback):
    """How far the run is. After the first step, a line with its time (tracing included);
    from then on steps/s and the ETA, measured from the end of the first step so that
    tracing stays out of them. Where stdout is a terminal they are on a progress bar (rich,
    which Keras brings) redrawn every step with the losses, and lines printed meanwhile
    (checkpoints) appear above it; elsewhere (a log file, a pipe) they are a plain line
    every `log_every` steps and at the last. With a `writer`, the losses, both learning
    rates and steps/s as TensorBoard scalars at those steps. `bar`: draw the bar (default:
    whether stdout is a terminal)."""

    def __init__(self, step: tf.Variable, total: int, log_every: int, writer=None, bar: bool | None = None):
        super().__init__()
        self.step, self.total, self.log_every, self.writer = step, total, log_every, writer
        self.draw_bar = sys.stdout.isatty() if bar is None else bar
        self.bar: rich.progress.Progress | None = None

    def on_train_begin(self, logs=None):
        self.started, self.steady = time.perf_counter(), None  # steady: (step, time) after the first step

    def on_train_batch_end(self, batch, logs=None):
        step, now, logs = int(self.step), time.perf_counter(), logs or {}
        losses = " ".join(f"{k}={v:.3f}" for k, v in logs.items())
        if self.steady is None:
            self.steady = (step, now)
            print(f"step {step}/{self.total}  first step {now - self.started:.0f} s (tracing included)  {losses}",
                  flush=True)
            self.scalars(step, logs)
            if self.draw_bar:
                self.open_bar(step, losses)
            return
        rate = (step - self.steady[0]) / max(now - self.steady[1], 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        speed = f"{rate:.2f} steps/s  ETA {f'{eta:.0f} s' if eta < 90 else f'{eta / 60:.1f} min'}"
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], completed=step, speed=speed, losses=losses, refresh=True)
        if step % self.log_every == 0 or step == self.total:
            if self.bar is None:
                print(f"step {step}/{self.total}  {speed}  {losses}", flush=True)
            self.scalars(step, logs, rate)

    def on_train_end(self, logs=None):
        self.close()

    def open_bar(self, step: int, losses: str) -> None:
        columns = [rich.progress.TextColumn("step"), rich.progress.MofNCompleteColumn(), rich.progress.BarColumn(),
                   rich.progress.TextColumn("{task.fields[speed]}")]
        # redrawn when a step ends, not by a thread: nothing on it changes in between
        self.bar = BarAndLosses(*columns, auto_refresh=False)
        self.bar.add_task("training", total=self.total, completed=step, speed="measuring steps/s", losses=losses)
        self.bar.start()
        self.bar.refresh()

    def close(self) -> None:
        """Leave the bar as it last was and give stdout back to the process; fit ended by an
        exception does not call on_train_end, so the trainer calls this too."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def scalars(self, step: int, losses: dict, rate: float | None = None) -> None:
        if self.writer is None:
            return
        with self.writer.as_default(step=step):
            for k, v in losses.items():
                tf.summary.scalar(f"loss/{k}", v)
            # np.asarray: a mirrored learning rate has no __float__
            tf.summary.scalar("lr/generator", float(np.asarray(self.model.g_optimizer.learning_rate)))
            tf.summary.scalar("lr/discriminator", float(np.asarray(self.model.d_optimizer.learning_rate)))
            if rate is not None:
                tf.summary.scalar("speed/steps_per_s", rate)


class BarAndLosses(rich.progress.Progress):
    """rich's progress bar with the losses on a line of their own below it, so that in a
    narrow terminal they wrap and the bar keeps its line."""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            yield rich.text.Text(task.fields["losses"])


class SampleGrids(keras.callbacks.Callback):
    """Every train.sample_every steps and at the last, the model's translations of a few
    held-out pairs as RUN/samples/step_NNNNNNN.png and a TensorBoard image."""

    def __init__(self, config: Config, run_dir: Path, step: tf.Variable, writer):
        super().__init__()
        self.config, self.run_dir, self.step, self.writer = config, run_dir, step, writer
        self._batch = None  # read once, when first drawn

    def on_train_batch_end(self, batch, logs=None):
        step, t = int(self.step), self.config.train
        if step % t.sample_every == 0 or step == t.steps:
            self.draw(step)

    def draw(self, step: int) -> None:
        if self._batch is None:
            pairs = build_dataset(heldout_data(self.config), min(4, self.config.train.batch_size), repeat=False)
            self._batch = {k: v.numpy() for k, v in next(iter(pairs)).items()}
        b = self._batch
        kind = model_kind(self.config)
        out = kind.inference(self.model)(*kind.batch_inputs(self.model, b))
        grid = translation_grid(b, out["image"].numpy(), [v.numpy() for k, v in out.items() if k != "image"])
        save_png(self.run_dir / "samples" / f"step_{step:07d}.png", grid)
        with self.writer.as_default(step=step):
            tf.summary.image("samples", grid[None])


class Checkpoints(keras.callbacks.Callback):
    """A checkpoint of `manager` every `every` steps and at the end of fit (also one ended
    by a signal), unless that step is saved already. Saving is collective: every worker
    saves, and the non-chief workers delete their copies."""

    def __init__(self, manager: tf.train.CheckpointManager, step: tf.Variable, every: int, chief: bool):
        super().__init__()
        self.manager, self.step, self.every, self.chief = manager, step, every, chief

    def on_train_begin(self, logs=None):
        self.saved = int(self.step)

    def on_train_batch_end(self, batch, logs=None):
        if int(self.step) % self.every == 0:
            self.save()

    def on_train_end(self, logs=None):
        if int(self.step) > self.saved:
            self.save()

    def save(self) -> None:
        self.saved = int(self.step)
        path = self.manager.save(checkpoint_number=self.saved)
        if not self.chief:
            shutil.rmtree(Path(path).parent, ignore_errors=True)
        else:
            print(f"checkpoint {path}", flush=True)


class HeldoutReport(keras.callbacks.Callback):
    """At the end of a run that reached train.steps, RUN/heldout.json: the correspondence
    and warp quality on held-out pairs (cocosnet_tf.heldout); kept as `report`."""

    def __init__(self, config: Config, run_dir: Path, step: tf.Variable):
        super().__init__()
        self.config, self.run_dir, self.step = config, run_dir, step
        self.report = None

    def on_train_end(self, logs=None):
        if int(self.step) < self.config.train.steps:
            return
        print("measuring the held-out pairs...", flush=True)
        self.report = {"which_pairs": HELDOUT_PAIRS, **heldout_report(self.model, self.config)}
        atomic_write_text(self.run_dir / "heldout.json", json.dumps(self.report, indent=2) + "\n")


class StopOnSignal(keras.callbacks.Callback):
    """Ctrl-C and SIGTERM end fit after the running step (fit then calls on_train_end,
    where Checkpoints saves). The handlers are this process's from on_train_begin to
    on_train_end; `restore` puts the previous ones back when fit ends by an exception."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.requested, self._previous = False, {}

    def on_train_begin(self, logs=None):
        self.requested = False
        self._previous = {s: signal.signal(s, self._request) for s in self.SIGNALS}

    def _request(self, signum, frame):
        log.warning("signal %d: stopping after this step and saving a checkpoint", signum)
        self.requested = True

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.restore()

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
