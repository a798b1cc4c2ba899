"""Losses. Every function returns one value per sample ([B]), so that the model can
average over the global batch under tf.distribute; the weights live in the config."""
