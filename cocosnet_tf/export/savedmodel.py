"""SavedModel export: the two signatures (graph.py), written and verified by reloading."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from cocosnet_tf.config import Config
from cocosnet_tf.export import verify
from cocosnet_tf.export.graph import encoded_function, encoded_reason
from cocosnet_tf.export.layout import ENCODED_SIGNATURE, FLOAT_SIGNATURE
from cocosnet_tf.models.registry import model_kind
from cocosnet_tf.visualize import to_uint8


def write(model, translate, config: Config, path: str) -> None:
    """The variables of the kind's inference networks and the signatures (over
    `translate`, the float function of graph.py) as a SavedModel in `path`."""
    signatures = {FLOAT_SIGNATURE: translate.get_concrete_function()}
    if not encoded_reason(config):
        signatures[ENCODED_SIGNATURE] = encoded_function(translate, config).get_concrete_function()
    root = tf.Module()
    # only the variables: tracking the Keras model itself makes tf.saved_model trace its
    # call with unknown arguments; the discriminator is not part of the export
    networks = model_kind(config).inference_networks(model).values()
    root.weights = [v.value for network in networks for v in network.weights]
    tf.saved_model.save(root, path, signatures=signatures)


def check(translate, config: Config, path: str, tolerance: float) -> list[str]:
    """Reload `path` and compare every signature with `translate`; raises VerificationError."""
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures[FLOAT_SIGNATURE]
    lines = []
    for case in verify.cases(config):
        reference = {k: v.numpy() for k, v in translate(**case.inputs).items()}
        got = {k: v.numpy() for k, v in serving(**{k: tf.constant(v) for k, v in case.inputs.items()}).items()}
        result = verify.compare(reference, got, case.uniform, tolerance, strict_all=True)
        lines += [f"{FLOAT_SIGNATURE} {case.name}: " + "; ".join(result.lines)]
        if result.failed:
            raise verify.VerificationError(lines[-1], tolerance)
    if ENCODED_SIGNATURE in loaded.signatures:
        pngs, inputs = verify.encoded_inputs(config)
        out = loaded.signatures[ENCODED_SIGNATURE](**{k: tf.constant(v) for k, v in pngs.items()})["image_bytes"]
        got = np.asarray(Image.open(io.BytesIO(out.numpy()[0])))
        expected = to_uint8(translate(**inputs)["image"].numpy()[0])
        levels = int(np.abs(got.astype(int) - expected).max())
        lines.append(f"{ENCODED_SIGNATURE}: PNG out differs from the float signature's output by at most "
                     f"{levels} level(s) of 255")
        if levels > 1:  # a value within rounding noise of a level boundary may land on either side
            raise verify.VerificationError(lines[-1], 1)
    return lines
