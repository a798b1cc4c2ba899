"""A trained run directory: its configuration, its checkpoints, and the inference
networks of its model kind (cocosnet_tf.models.registry; CoCosNet: correspondence +
generator) restored from one. Shared by the commands that use a trained run (translate,
evaluate, export).

Only the inference networks are restored (optimisers, step and discriminator are
ignored, so checkpoints written by Checkpoint.write or without a discriminator work
too); every one of their variables must be matched and of its shape,
so a checkpoint of another architecture (or another model config through --set) or one
missing weights is a ConfigError, never random weights. Inference runs in the weights'
dtype: float32 (mixed-precision runs keep float32 weights), float64 for a float64 run.
"""

from __future__ import annotations

import gc
import logging
import os
from contextlib import contextmanager

import keras
import tensorflow as tf

from cocosnet_tf.checkpoints import check_readable, first_line, is_complete, newest_checkpoint
from cocosnet_tf.config import Config, ConfigError, load_config
from cocosnet_tf.models.registry import model_kind
from cocosnet_tf.models.training import full_precision


def load_run_config(run_dir: str, overrides: list[str], config_path: str | None = None) -> Config:
    """The run's config.yaml (or `config_path` instead of it) with `overrides` applied;
    its model.kind must be a known one."""
    if not os.path.isdir(run_dir):
        raise ConfigError(f"--run {run_dir}: folder does not exist")
    path = config_path or os.path.join(run_dir, "config.yaml")
    if config_path is None and not os.path.isfile(path):
        raise ConfigError(f"{path} does not exist; --run must be a training run directory "
                          "(written by python -m cocosnet_tf.train)")
    config = load_config(path, overrides)
    model_kind(config)
    return config


def checkpoint_prefix(run_dir: str, given: str | None) -> str:
    """--checkpoint (a folder, a prefix or its .index file) or the run's newest, as a
    prefix. Folders are searched for their newest complete checkpoint, whatever their
    `checkpoint` state file names (see cocosnet_tf.checkpoints)."""
    if not given:
        folder = os.path.join(run_dir, "checkpoints")
        path = newest_checkpoint(folder)
        if path is None:
            raise ConfigError(f"{folder}: no checkpoint; train the run first or name one with --checkpoint")
        return path
    if os.path.isdir(given):
        path = newest_checkpoint(given)
        if path is None:
            raise ConfigError(f"--checkpoint {given}: no checkpoint in this folder")
        return path
    prefix = given[: -len(".index")] if given.endswith(".index") else given
    if not os.path.isfile(prefix + ".index"):
        raise ConfigError(f"--checkpoint {given}: not a checkpoint; expected a checkpoint folder or a prefix "
                          f"such as {os.path.join(run_dir, 'checkpoints', 'ckpt-1000')} (with its .index file)")
    if not is_complete(prefix):
        raise ConfigError(f"--checkpoint {given}: its data files ({prefix}.data-*) are missing or incomplete")
    return prefix


def find_checkpoint(run_dir: str, given: str | None) -> str:
    """The checkpoint prefix to restore, read in full and checked to hold a model."""
    path = checkpoint_prefix(run_dir, given)
    if not any(name.startswith("model/") for name in check_readable(path)):
        raise ConfigError(f"{path}: holds no model (a checkpoint written by python -m cocosnet_tf.train has one)")
    return path


# the last built network, by the config it was built for: building is the slow part, and
# callers of main() in one process (tests, scripts) would otherwise pay it every time
_BUILT: dict[tuple, keras.Model] = {}


def build_model(config: Config) -> keras.Model:
    """The model of the config's kind with all the variables of its inference networks."""
    h, w = config.data.crop_size
    key = (repr(config.model), repr(config.runtime), config.data.semantic_nc, h, w)
    if key not in _BUILT:
        keras.mixed_precision.set_dtype_policy(full_precision(config).name)
        model = model_kind(config).build(config)
        model.build_inference(h, w)
        _BUILT.clear()
        _BUILT[key] = model
    return _BUILT[key]


def load_model(config: Config, checkpoint: str) -> keras.Model:
    """Build the networks and restore `checkpoint` into them; every weight of the
    inference networks must be restored (a missing one is unmatched, one of another
    shape a ValueError)."""
    with _tensorflow_log_muted():
        reason, half_restored = _restore(build_model(config), checkpoint)
        if half_restored:
            # a read that failed part-way leaves its pending values in the network (as it
            # did in its error, freed on return), and each logs a warning when freed:
            # hundreds of lines that would bury the error at exit. Drop them now, quietly.
            _BUILT.clear()
            gc.collect()
    if reason:
        raise ConfigError(
            f"{checkpoint}: does not fit the model of this run's config "
            f"({model_kind(config).weight_settings(config)}): {reason}")
    return build_model(config)  # the cached network, restored


def _restore(model: keras.Model, checkpoint: str) -> tuple[str, bool]:
    """("", False) when `checkpoint` restored into the inference networks of `model`,
    else (why not, whether a read failed part-way)."""
    # only the inference networks, so that the assertion covers exactly them; under the
    # model's attribute names, the paths the training checkpoint holds them at
    inference = tf.Module()
    for name, network in model_kind(model.config).inference_networks(model).items():
        setattr(inference, name, network)
    try:
        # read(): also checkpoints written with Checkpoint.write (no save counter)
        status = tf.train.Checkpoint(model=inference).read(checkpoint)
    except (ValueError, tf.errors.OpError) as err:
        return first_line(err), True
    status.expect_partial()  # optimisers, step and the discriminator stay unread
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        return first_line(err), False
    return "", False


@contextmanager
def _tensorflow_log_muted():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
