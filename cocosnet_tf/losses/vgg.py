"""VGG19 features (relu1_2 ... relu5_2) and the losses built on them.

The ImageNet weights are Keras' own VGG19 file, the Caffe-converted weights that the
official `vgg19_conv.pth` also holds; Caffe preprocessing (BGR, mean subtracted, 0-255)
from images in [-1, 1], as the official code with --vgg_normal_correct. Nothing here
downloads: the file comes from Keras' cache or from `losses.vgg_weights`.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from cocosnet_tf.config import ConfigError
from cocosnet_tf.losses.adversarial import per_sample_mean

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
LAYERS = ("block1_conv2", "block2_conv2", "block3_conv2", "block4_conv2", "block5_conv2")  # r12 .. r52
FEATURE_MATCHING_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class MissingWeightsError(ConfigError):
    """A VGG loss is on and its weights file cannot be found (a configuration error)."""


def find_weights(path: str = "") -> Path:
    """The VGG19 weights file: `path` if given, else Keras' cache; a clear error otherwise."""
    if path:
        if not Path(path).is_file():
            raise MissingWeightsError(f"losses.vgg_weights: {path} does not exist")
        return Path(path)
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / WEIGHTS_FILE
    if cache.is_file():
        return cache
    raise MissingWeightsError(
        "the VGG losses (losses.vgg, losses.perceptual, losses.contextual) need ImageNet VGG19 weights, "
        f"which are not in Keras' cache ({cache}). On a machine with internet run "
        "`python -c \"import keras; keras.applications.VGG19(include_top=False)\"` and copy "
        f"{WEIGHTS_FILE} here, or name the file with --set losses.vgg_weights=PATH, "
        "or set those three loss weights to 0")


def build_vgg(weights: str | Path | None) -> keras.Model:
    """A frozen model from an image in [-1, 1] to the five relu features.
    weights=None gives random weights (tests only)."""
    base = keras.applications.VGG19(include_top=False, weights=None)
    if weights is not None:
        base.load_weights(str(weights))
    base.trainable = False
    outputs = [base.get_layer(name).output for name in LAYERS]
    return keras.Model(base.input, outputs, name="vgg19_features")


def vgg_input(image: tf.Tensor) -> tf.Tensor:
    bgr = tf.reverse((tf.cast(image, tf.float32) + 1.0) * 127.5, axis=[-1])
    return bgr - tf.constant(CAFFE_MEAN_BGR)


def features(vgg: keras.Model, image: tf.Tensor) -> list[tf.Tensor]:
    """VGG19 features in the image's dtype (float32, or float64 in a float64 run)."""
    return [tf.cast(f, image.dtype) for f in vgg(vgg_input(image), training=False)]


def feature_matching(fake: list[tf.Tensor], real: list[tf.Tensor]) -> tf.Tensor:
    """Weighted L1 over r12..r52 (weights 1/32 .. 1)."""
    return tf.add_n([w * per_sample_mean(tf.abs(f - tf.stop_gradient(r)))
                     for w, f, r in zip(FEATURE_MATCHING_WEIGHTS, fake, real)])


def perceptual(fake: list[tf.Tensor], real: list[tf.Tensor]) -> tf.Tensor:
    """MSE on r42 (the official --which_perceptual 4_2)."""
    return per_sample_mean(tf.square(fake[3] - tf.stop_gradient(real[3])))
