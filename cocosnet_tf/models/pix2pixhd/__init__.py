"""pix2pixHD (Wang et al., CVPR 2018): the coarse-to-fine generator (generator.py), the
instance-wise feature encoder (encoder.py), the per-class feature clusters
(clusters.py), the training phases (phases.py) and the trainable model (model.py);
`kind.Pix2PixHDKind` is how the commands use it. Its discriminator is
cocosnet_tf.discriminator.MultiscaleDiscriminator. Importing the package loads nothing
(the registry imports the kind without TensorFlow)."""
