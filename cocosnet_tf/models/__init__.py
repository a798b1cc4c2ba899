"""The image-translation models, one subpackage a kind (cocosnet, pix2pixhd), sharing
cocosnet_tf.layers, cocosnet_tf.losses, cocosnet_tf.data and the discriminator; the
commands reach them through cocosnet_tf.models.registry by `model.kind`."""
