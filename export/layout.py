"""TF-Serving's model layout (BASE/NAME/VERSION/) and writing a version all at once."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.fileio import DataError

CONFIG_FILE = os.path.join("assets.extra", "config.yaml")  # TF-Serving ignores assets.extra
MODEL_FILE, FLOAT16_FILE = "model.onnx", "model_fp16.onnx"  # ONNX exports
FLOAT_SIGNATURE, ENCODED_SIGNATURE = "serving_default", "translate_encoded"  # SavedModel signatures


def version_dir(base: str, name: str, version: int) -> str:
    """BASE/NAME/VERSION, refused when it exists: a served version never changes under a server."""
    if version < 1:
        raise ConfigError(f"--version {version}: versions are integers >= 1")
    if not name or os.sep in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: a model name is one non-hidden folder name")
    path = os.path.join(base, name, str(version))
    if os.path.exists(path):
        raise ConfigError(f"{path} exists; versions are never overwritten, give another --version")
    return path


@contextmanager
def staged_version(path: str) -> Iterator[str]:
    """A hidden folder beside `path` to write the version into; it becomes `path` only when
    the block ends without an error (one rename), else it is removed."""
    parent = os.path.dirname(path)
    created = [d for d in (os.path.dirname(parent), parent) if not os.path.isdir(d)]
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    except OSError as err:
        raise DataError(f"{parent}: cannot write the export here ({err})") from err
    staged = os.path.join(tmp, "version")
    try:
        os.makedirs(os.path.dirname(os.path.join(staged, CONFIG_FILE)))
        yield staged
        if os.path.exists(path):  # made by someone else meanwhile
            raise ConfigError(f"{path} appeared while exporting; nothing was written")
        os.rename(staged, path)
        created = []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):  # folders made only for a version that failed
            try:
                os.rmdir(folder)
            except OSError:
                pass


def save_config(version: str, config: Config) -> None:
    """The resolved config beside the model (clients and the server read sizes and channels from it)."""
    config.save(os.path.join(version, CONFIG_FILE))


def newest_version(model_dir: str) -> str:
    """The highest numbered version folder in BASE/NAME (TF-Serving's default policy)."""
    if not os.path.isdir(model_dir):
        raise ConfigError(f"{model_dir}: folder does not exist; expected BASE/NAME holding version folders")
    versions = [int(v) for v in os.listdir(model_dir) if v.isdigit() and os.path.isdir(os.path.join(model_dir, v))]
    if not versions:
        raise ConfigError(f"{model_dir}: no version folder (1, 2, ...); write one with python -m export")
    return os.path.join(model_dir, str(max(versions)))
