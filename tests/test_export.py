"""python -m cocosnet_tf.export: SavedModel signatures and parity, the encoded-image round trip, ONNX
Runtime against TensorFlow at two sizes and two batch sizes, and clean failures.

The tiny run is exported once per session by the commands themselves (conftest.tiny_exports).
Which values must match and why: cocosnet_tf/export/verify.py (PatchMatch's discrete choices make the
others differ by rounding); the uniform-exemplar samples below are compared in full."""

import io
import os

import numpy as np
import onnx
import pytest
import tensorflow as tf
from PIL import Image

from conftest import run_main
from cocosnet_tf.runs import find_checkpoint, load_model
from cocosnet_tf.visualize import to_uint8
from cocosnet_tf.export import layout, verify
from cocosnet_tf.export.__main__ import main as export_main
from cocosnet_tf.export.graph import float_function
from cocosnet_tf.export.to_onnx import session

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def keras_model(tiny_exports):
    return load_model(tiny_exports.config, find_checkpoint(str(tiny_exports.run), None))


@pytest.fixture(scope="module")
def graph(keras_model):
    """The Keras model as the exported graph (traced once: its shapes are dynamic)."""
    return float_function(keras_model)


@pytest.fixture(scope="module")
def loaded(tiny_exports):
    return tf.saved_model.load(str(tiny_exports.savedmodel))


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_savedmodel_layout_and_signatures(tiny_exports, loaded):
    version = tiny_exports.savedmodel
    assert sorted(os.listdir(version.parent)) == ["1"]  # no staging folder left behind
    assert (version / "saved_model.pb").is_file() and (version / "assets.extra" / "config.yaml").is_file()
    assert sorted(loaded.signatures) == ["serving_default", "translate_encoded"]
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()} == {
        "label": (tf.float32, [None, None, None, 8]), "exemplar": (tf.float32, [None, None, None, 3]),
        "exemplar_label": (tf.float32, [None, None, None, 8])}
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert {k: (v.dtype, v.shape.as_list()) for k, v in outputs.items()} == {
        name: (tf.float32, [None, None, None, 3]) for name in ("image", "warp0", "warp1")}
    encoded = loaded.signatures["translate_encoded"]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in encoded.structured_input_signature[1].items()} == {
        k: (tf.string, [None]) for k in ("label", "exemplar", "exemplar_label")}
    assert {k: v.dtype for k, v in encoded.structured_outputs.items()} == {"image_bytes": tf.string}
    printed = tiny_exports.printed["savedmodel"]
    assert "verified serving_default 64x64 batch 2" in printed and "wrote " in printed


def test_savedmodel_outputs_equal_keras(loaded, keras_model, graph):
    serving = loaded.signatures["serving_default"]
    inputs = verify.sample_inputs(8, (96, 64), [False, True], seed=5)  # not the export's size
    got = serving(**{k: tf.constant(v) for k, v in inputs.items()})
    reference = graph(**inputs)
    for name in ("image", "warp0", "warp1"):
        assert got[name].shape == reference[name].shape
        assert max_diff(got[name], reference[name]) <= 1e-6, name  # the same graph, reloaded
    # the Keras model called eagerly: equal where no candidate choice can matter (see verify.py):
    # everything with the uniform exemplar, warp0 (the dense level) with the textured one too
    eager = keras_model(inputs["label"], inputs["exemplar"], inputs["exemplar_label"])
    assert max_diff(got["image"][1:], eager["image"][1:]) <= TOLERANCE
    assert max_diff(got["warp1"][1:], eager["warps"][1][1:]) <= TOLERANCE
    assert max_diff(got["warp0"], eager["warps"][0]) <= TOLERANCE / 0.01


def png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_encoded_signature_round_trip(loaded, graph):
    encoded = loaded.signatures["translate_encoded"]
    rng = np.random.default_rng(1)
    ids = np.repeat(np.repeat(rng.integers(0, 8, (2, 8, 8)), 8, axis=1), 8, axis=2).astype(np.uint8)
    colour = np.full((64, 64, 3), (200, 40, 90), np.uint8)
    out = encoded(label=tf.constant([png(ids[0])]), exemplar=tf.constant([png(colour)]),
                  exemplar_label=tf.constant([png(ids[1])]))["image_bytes"].numpy()
    picture = np.asarray(Image.open(io.BytesIO(out[0])))
    onehot = np.eye(8, dtype=np.float32)[ids]
    expected = graph(onehot[:1], colour[None].astype(np.float32) / 127.5 - 1, onehot[1:])
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    assert np.abs(picture.astype(int) - to_uint8(expected["image"].numpy()[0])).max() <= 1
    # other sizes are resized to the export's; an id beyond label_nc is refused
    big = encoded(label=tf.constant([png(np.kron(ids[0], np.ones((2, 2), np.uint8)))]),
                  exemplar=tf.constant([png(np.kron(colour, np.ones((2, 2, 1), np.uint8)))]),
                  exemplar_label=tf.constant([png(ids[1])]))["image_bytes"].numpy()
    assert np.asarray(Image.open(io.BytesIO(big[0]))).shape == (64, 64, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label ids must be within 0..7"):
        encoded(label=tf.constant([png(ids[0] + 8)]), exemplar=tf.constant([png(colour)]),
                exemplar_label=tf.constant([png(ids[1])]))


def test_onnx_matches_tensorflow_at_two_sizes_and_batches(tiny_exports, graph):
    path = tiny_exports.onnx / layout.MODEL_FILE
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert "Loop" in {n.op_type for n in proto.graph.node}  # the chunked PatchMatch evaluation
    runner = session(str(path))
    assert [i.name for i in runner.get_inputs()] == ["label", "exemplar", "exemplar_label"]
    assert all(not isinstance(i.shape[0], int) for i in runner.get_inputs())  # dynamic batch
    names = [o.name for o in runner.get_outputs()]
    assert names == ["image", "warp0", "warp1"]
    for size in ((64, 64), (96, 128)):
        for batch in (1, 2):
            uniform = [True] * batch
            inputs = verify.sample_inputs(8, size, uniform, seed=batch)
            got = dict(zip(names, runner.run(None, inputs)))
            reference = graph(**inputs)
            for name in names:
                assert got[name].shape == tuple(reference[name].shape), (size, batch, name)
                assert max_diff(got[name], reference[name]) <= TOLERANCE, (size, batch, name)
            # the dense level on a real exemplar: within tolerance / temperature (cocosnet_tf/export/verify.py)
            textured = verify.sample_inputs(8, size, [False] * batch, seed=10 + batch)
            assert max_diff(runner.run(["warp0"], textured)[0], graph(**textured)["warp0"]) <= TOLERANCE / 0.01
    assert "verified model.onnx 64x64 batch 2" in tiny_exports.printed["onnx"]


def test_verification_compares_what_must_match():
    reference = {"image": np.zeros((2, 4, 4, 3)), "warp0": np.zeros((2, 1, 1, 3))}
    off = {"image": np.full((2, 4, 4, 3), 0.5), "warp0": np.zeros((2, 1, 1, 3))}
    off["image"][1] = 2e-4  # the uniform sample is beyond the tolerance
    result = verify.compare(reference, off, [False, True], TOLERANCE, strict_all=False, warp0_limit=1e-2)
    assert result.failed and result.worst == pytest.approx(2.0)  # in tolerances
    off["image"][1] = 0
    result = verify.compare(reference, off, [False, True], TOLERANCE, strict_all=False, warp0_limit=1e-2)
    assert not result.failed and "100.0% beyond" in result.lines[0]  # the textured one is reported only
    assert verify.compare(reference, off, [False, True], TOLERANCE, strict_all=True).failed
    off["warp0"][0] = 5e-3  # textured warp0: held to its own limit (tolerance / temperature)
    assert not verify.compare(reference, off, [False, True], TOLERANCE, strict_all=False, warp0_limit=1e-2).failed
    off["warp0"][0] = 2e-2
    assert verify.compare(reference, off, [False, True], TOLERANCE, strict_all=False, warp0_limit=1e-2).failed


def test_staged_version_leaves_nothing_on_failure(tmp_path):
    path = layout.version_dir(str(tmp_path), "m", 3)
    with pytest.raises(RuntimeError):
        with layout.staged_version(path) as staged:
            (open(os.path.join(staged, "saved_model.pb"), "w")).close()
            raise RuntimeError("verification failed")
    assert os.listdir(tmp_path) == []  # neither the version nor the folders made for it


def test_bad_input_is_one_error_line(tiny_exports, tmp_path, capsys):
    run = tiny_exports.run
    cases = [
        (["savedmodel", "--run", str(tmp_path / "missing"), "--out", str(tmp_path)], "folder does not exist"),
        (["onnx", "--run", str(run), "--out", str(tiny_exports.root / "onnx")], "exists; versions are never"),
        (["onnx", "--run", str(run), "--out", str(tmp_path), "--opset", "30"], "writes opsets 13..18"),
        (["savedmodel", "--run", str(run), "--out", str(tmp_path), "--bogus"], "unrecognized arguments: --bogus"),
        (["savedmodel", "--run", str(run), "--out", str(tmp_path), "--version", "0"], "versions are integers"),
    ]
    for args, message in cases:
        code, _, err = run_main(export_main, args, capsys)
        lines = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, err)
    assert sorted(os.listdir(tmp_path)) == []  # nothing written by the refused runs
