"""Datasets -> tf.data pipelines: embedded synthetic scenes, segmentation folders, edge
maps, DeepFashion(HD) poses; exemplars from pair lists, pseudo-pairs or other images."""
