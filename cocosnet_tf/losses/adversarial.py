"""Hinge GAN loss and discriminator feature matching (the official GANLoss('hinge'))."""

from __future__ import annotations

import tensorflow as tf


def per_sample_mean(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=-1)


def _mean_over_scales(values: list[tf.Tensor]) -> tf.Tensor:
    return tf.add_n(values) / float(len(values))


def hinge_discriminator(real_logits: list[tf.Tensor], fake_logits: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """(real term, fake term), each mean(relu(1 -+ logit)) averaged over the scales."""
    real = _mean_over_scales([per_sample_mean(tf.nn.relu(1.0 - r)) for r in real_logits])
    fake = _mean_over_scales([per_sample_mean(tf.nn.relu(1.0 + f)) for f in fake_logits])
    return real, fake


def hinge_generator(fake_logits: list[tf.Tensor]) -> tf.Tensor:
    """-mean(logit), averaged over the scales."""
    return _mean_over_scales([-per_sample_mean(f) for f in fake_logits])


def feature_matching(fake_features: list[list[tf.Tensor]], real_features: list[list[tf.Tensor]]) -> tf.Tensor:
    """L1 between the discriminator's intermediate outputs (the logit excluded) of the
    fake and the (fixed) real image, summed over layers, averaged over the scales."""
    per_scale = []
    for fake, real in zip(fake_features, real_features):
        per_scale.append(tf.add_n([per_sample_mean(tf.abs(f - tf.stop_gradient(r)))
                                   for f, r in zip(fake[:-1], real[:-1])]))
    return _mean_over_scales(per_scale)
