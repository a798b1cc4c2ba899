"""pix2pixHD's instance-wise feature encoder E and the generator's input.

E is an encoder-decoder on the real image (G1's shape without residual blocks, width
nef) ending in a tanh map of feature_channels; each instance's pixels then hold the
mean of that map over the instance: one vector per instance. Concatenated with the
semantic map, these vectors let one label map give different appearances (at test time
they come from the per-class clusters, clusters.py).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.layers.blocks import attached
from cocosnet_tf.layers.composite import Composite
from cocosnet_tf.models.pix2pixhd.generator import SMALLEST_INPUT, check_size
from cocosnet_tf.models.pix2pixhd.units import ConvUnit, ImageHead


def instance_average(features: tf.Tensor, instances: tf.Tensor) -> tf.Tensor:
    """features (B, H, W, C), instances (B, H, W) integer ids -> each pixel's features
    replaced by their mean over its instance (ids are per image: id 5 in two images is
    two instances)."""
    if instances.shape.rank != 3 or features.shape.rank != 4:
        raise ValueError(f"instance_average takes features (B, H, W, C) and instances (B, H, W), got "
                         f"{features.shape} and {instances.shape}")
    ids = tf.cast(instances, tf.int64)
    ids -= tf.reduce_min(ids)
    # one key per (image, id): offset each image's ids past the largest id
    span = tf.reduce_max(ids) + 1
    keys = ids + span * tf.range(tf.shape(ids, out_type=tf.int64)[0])[:, None, None]
    unique, segment = tf.unique(tf.reshape(keys, [-1]))
    flat = tf.reshape(features, [-1, tf.shape(features)[-1]])
    means = tf.math.unsorted_segment_mean(flat, segment, tf.size(unique))
    return tf.reshape(tf.gather(means, segment), tf.shape(features))


def generator_input(semantic: tf.Tensor, features: tf.Tensor) -> tf.Tensor:
    """concat(semantic map, instance feature map) on the channel axis, as G reads them."""
    if semantic.shape[:3] != features.shape[:3]:
        raise ValueError(f"the semantic map {semantic.shape} and the feature map {features.shape} differ in "
                         f"batch or spatial size")
    return tf.concat([semantic, tf.cast(features, semantic.dtype)], axis=-1)


@keras.saving.register_keras_serializable("pix2pixhd")
class FeatureEncoder(Composite, keras.Model):
    """call(image, instances) -> (B, H, W, feature_channels), constant within each instance."""

    def __init__(self, feature_channels: int = 3, nef: int = 16, n_downsample_encoder: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.feature_channels, self.nef, self.n_downsample_encoder = feature_channels, nef, n_downsample_encoder
        units = [ConvUnit(nef, 7, "reflect", name="front")]
        units += [ConvUnit(nef * 2 ** (i + 1), 3, "down", name=f"down_{i}") for i in range(n_downsample_encoder)]
        units += [ConvUnit(nef * 2 ** (n_downsample_encoder - i - 1), 3, "up", name=f"up_{i}")
                  for i in range(n_downsample_encoder)]
        self.units = attached(self, "unit", units)
        self.head = ImageHead(feature_channels, name="head")

    def call(self, image, instances):
        factor = 2 ** self.n_downsample_encoder
        check_size(image, factor, max(SMALLEST_INPUT, factor), "FeatureEncoder")
        x = image
        for unit in self.units:
            x = unit(x)
        return instance_average(self.head(x), instances)

    def get_config(self):
        return {**super().get_config(), "feature_channels": self.feature_channels, "nef": self.nef,
                "n_downsample_encoder": self.n_downsample_encoder}
