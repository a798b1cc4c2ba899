"""Name scopes for the backward pass of custom gradients."""

from __future__ import annotations

import tensorflow as tf


def in_forward_scope(gradient):
    """A custom gradient's `gradient(dy)` that runs in the name scope its forward pass ran
    in: the tape calls it outside every scope, and its ops would carry no layer's name
    (profiles and graph views group ops by their scopes: benchmarks/profile.py)."""
    scope = tf.get_current_name_scope()
    if not scope:
        return gradient

    def scoped(dy):
        with tf.name_scope(scope + "/"):  # a trailing slash re-enters the scope as it is
            return gradient(dy)

    return scoped
