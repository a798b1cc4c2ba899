"""What every command shares: `--config FILE` and `--set section.key=value ...`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from cocosnet_tf import TENSORFLOW_MISSING
from cocosnet_tf.config import Config, ConfigError, load_config
from cocosnet_tf.fileio import DataError

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo.yaml")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="YAML configuration (default: configs/demo.yaml when present, else built-in defaults)")
    add_set_argument(parser)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """`--set`, into args.overrides; alone for commands whose config is not a --config file."""
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override configuration values, e.g. --set data.crop_size=[256,256] train.steps=10; "
                             "repeatable")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """`--run DIR` and `--checkpoint PATH`: the commands that read a trained run."""
    parser.add_argument("--run", required=True, metavar="DIR",
                        help="training run directory (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="checkpoint folder or prefix (default: the newest in DIR/checkpoints)")


def config_from_args(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and os.path.isfile(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    return load_config(path, args.overrides)


@contextlib.contextmanager
def _stderr_silenced(silence: bool):
    """File descriptor 2 to /dev/null while the block runs: TensorFlow's C++ import prints
    its oneDNN notice whatever TF_CPP_MIN_LOG_LEVEL says. An import failure
    still arrives as an exception, printed after the descriptor is restored."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run(main_fn) -> None:
    """Run a command body; configuration and data errors end it with one clear line.
    TensorFlow loads here, after the command has parsed its arguments."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # TensorFlow's and tf2onnx's INFO lines (checkpoint sharding, renamed captures, folded
    # nodes) and its C++ log (end of a dataset, large allocations, graph optimisations
    # skipped) mean nothing to the user; failures still arrive as exceptions, and
    # TF_CPP_MIN_LOG_LEVEL set by the user wins
    for name in ("absl", "tensorflow", "tf2onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        # the notices are INFO lines: shown only to a user who asked for INFO (level 0)
        with _stderr_silenced(os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"):
            import tensorflow as tf
    except ImportError as err:
        print(f"error: {TENSORFLOW_MISSING} ({err})", file=sys.stderr)
        sys.exit(2)

    try:
        main_fn()
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except tf.errors.OpError as err:
        # errors raised while tf.data loads a file arrive wrapped; keep the DataError line
        lines = [line.split("DataError:", 1)[1] for line in str(err.message).splitlines() if "DataError:" in line]
        print(f"error: {lines[-1].strip() if lines else err.message}", file=sys.stderr)
        sys.exit(2)
