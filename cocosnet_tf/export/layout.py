"""TF-Serving's model layout (BASE/NAME/VERSION/) and writing a version all at once."""

from __future__ import annotations

import os

from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.fileio import staged_directory

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


def staged_version(path: str):
    """A hidden folder beside `path` to write the version into; it becomes `path` only when
    the block ends without an error (one rename), else it is removed."""
    return staged_directory(path, prefix=".export-")


def save_config(version: str, config: Config) -> None:
    """The resolved config beside the model (clients and the server read sizes and channels from it)."""
    config.save(os.path.join(version, CONFIG_FILE))


def newest_version(model_dir: str) -> str:
    """The highest numbered version folder in BASE/NAME (TF-Serving's default policy)."""
    if not os.path.isdir(model_dir):
        raise ConfigError(f"{model_dir}: folder does not exist; expected BASE/NAME holding version folders")
    versions = [int(v) for v in os.listdir(model_dir) if v.isdigit() and os.path.isdir(os.path.join(model_dir, v))]
    if not versions:
        raise ConfigError(f"{model_dir}: no version folder (1, 2, ...); write one with python -m cocosnet_tf.export")
    return os.path.join(model_dir, str(max(versions)))
