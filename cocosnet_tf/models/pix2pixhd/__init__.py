"""pix2pixHD (Wang et al., CVPR 2018): the coarse-to-fine generator, the instance-wise
feature encoder, the per-class feature clusters and the training phases' variables.
Its discriminator is cocosnet_tf.discriminator.MultiscaleDiscriminator. Not a model kind
of cocosnet_tf.models.registry yet."""

from cocosnet_tf.models.pix2pixhd.clusters import (cluster_features, feature_map, instance_features, kmeans,
                                                   load_clusters, save_clusters)
from cocosnet_tf.models.pix2pixhd.encoder import FeatureEncoder, generator_input, instance_average
from cocosnet_tf.models.pix2pixhd.generator import GlobalGenerator, LocalEnhancer, Pix2PixHDGenerator
from cocosnet_tf.models.pix2pixhd.phases import PHASES, phase_at, phase_variables

__all__ = ["FeatureEncoder", "GlobalGenerator", "LocalEnhancer", "PHASES", "Pix2PixHDGenerator", "cluster_features",
           "feature_map", "generator_input", "instance_average", "instance_features", "kmeans", "load_clusters",
           "phase_at", "phase_variables", "save_clusters"]
