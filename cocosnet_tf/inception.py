"""Inception-v3 pool features for FID, from local weights only.

Nothing here downloads: the ImageNet weights are Keras' own notop file, from its cache
($KERAS_HOME/models, default ~/.keras/models) or from `evaluate.inception_weights`; the
network is built with weights=None and the file loaded into it. Keras' Inception-v3 is
not the graph the reference FID code uses (the 2015 TF-slim export), so its FIDs compare
runs evaluated here with each other, not with published figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cocosnet_tf.config import ConfigError

WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INPUT_SIZE = 299
IMAGE_FORMAT = ("uint8 RGB (what a PNG holds), resized bilinearly (no antialiasing) to 299 x 299 and scaled "
                "to [-1, 1] (Keras' Inception-v3 preprocessing); features: the 2048-d average pool")


def cache_path() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / WEIGHTS_FILE


def find_weights(path: str = "") -> tuple[Path | None, str]:
    """(the weights file, "") or (None, why there is none). A named file that does not
    exist is a ConfigError: it was asked for."""
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"evaluate.inception_weights: {path} does not exist")
        return Path(path), ""
    if cache_path().is_file():
        return cache_path(), ""
    return None, (f"no Inception-v3 weights: {WEIGHTS_FILE} is not in Keras' cache ({cache_path()}) and "
                  "evaluate.inception_weights is empty; on a machine with internet run `python -c \"import keras; "
                  "keras.applications.InceptionV3(include_top=False)\"` and copy the file here")


def build_inception(weights: str | Path | None) -> keras.Model:
    """Image [299, 299, 3] in [-1, 1] -> 2048 pool features; weights=None: random (tests only)."""
    model = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                           input_shape=(INPUT_SIZE, INPUT_SIZE, 3))
    if weights is not None:
        model.load_weights(str(weights))
    model.trainable = False
    return model


def pool_features(model: keras.Model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """uint8 images [N, H, W, 3] -> float64 features [N, 2048]."""
    features = []
    for start in range(0, images.shape[0], batch_size):
        batch = tf.image.resize(tf.cast(images[start:start + batch_size], tf.float32), [INPUT_SIZE, INPUT_SIZE],
                                method="bilinear", antialias=False)
        features.append(model(batch / 127.5 - 1.0, training=False).numpy().astype(np.float64))
    return np.concatenate(features)
