"""A trained pix2pixHD run's inference networks (generator and encoder), restored from
one of its checkpoints; every one of their variables must be matched and of its shape."""

from __future__ import annotations

import keras
import tensorflow as tf

from cocosnet_tf.checkpoints import first_line
from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.models.training import full_precision
from cocosnet_tf.models.pix2pixhd.model import Pix2PixHD

CLUSTERS_FILE = "pix2pixhd_clusters.npz"  # in the run directory, written by python -m cocosnet_tf.pix2pixhd_features


def load_pix2pixhd(config: Config, checkpoint: str) -> Pix2PixHD:
    """The inference networks of `config`, restored from `checkpoint` (the
    discriminator, optimisers and step stay unread)."""
    h, w = config.data.crop_size
    keras.mixed_precision.set_dtype_policy(full_precision(config).name)
    model = Pix2PixHD(config, config.data.semantic_nc)
    model.build_inference(h, w)
    inference = tf.Module()
    inference.generator = model.generator
    if model.encoder is not None:
        inference.encoder = model.encoder
    try:
        status = tf.train.Checkpoint(model=inference).read(checkpoint)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        p = config.model.pix2pixhd
        raise ConfigError(f"{checkpoint}: does not fit the pix2pixHD networks of this run's config (model.ngf="
                          f"{config.model.ngf}, model.pix2pixhd local_enhancers={p.local_enhancers}, "
                          f"feature_channels={p.feature_channels}, semantic channels={config.data.semantic_nc}): "
                          f"{first_line(err)}") from err
    return model
