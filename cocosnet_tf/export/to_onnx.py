"""ONNX export through tf2onnx: the float signature's graph, checked, verified with ONNX Runtime.

PatchMatch's chunked evaluation (runtime.chunk > 0) is a tf.map_fn, which
tf2onnx turns into an ONNX Loop; ONNX Runtime runs it, so the export keeps the run's
chunk and with it the bounded memory at large sizes (a dynamic-size graph cannot know
that a chunk covers the whole level, so the Loop is always there). Execution providers
without Loop support can take an export made with --set runtime.chunk=0.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import tf2onnx

from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.export import verify
from cocosnet_tf.models.registry import model_kind

MAX_OPSET = max(tf2onnx.constants.OPSET_TO_IR_VERSION)  # the highest opset this tf2onnx writes
MIN_OPSET = 13  # Softmax over the last axis only and TopK with a dynamic K input need 13


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"--opset {opset}: tf2onnx {tf2onnx.__version__} writes opsets {MIN_OPSET}..{MAX_OPSET}")


def convert(translate, opset: int) -> tuple[onnx.ModelProto, int, list[str]]:
    """(model, opset used, notes) of `translate` (graph.float_function): `opset`, or the
    highest below it that converts and passes onnx.checker."""
    check_opset(opset)
    notes = []
    # tf2onnx otherwise deep-copies the whole graph (weights included) before each of its
    # optimiser passes, to undo a pass that raises: a third of the conversion time here
    os.environ.setdefault(tf2onnx.constants.ENV_TF2ONNX_CATCH_ERRORS, "FALSE")
    for candidate in range(opset, MIN_OPSET - 1, -1):
        try:
            proto, _ = tf2onnx.convert.from_function(translate, input_signature=translate.input_signature,
                                                     opset=candidate)
            onnx.checker.check_model(proto)
            return proto, candidate, notes
        except Exception as err:  # tf2onnx raises many kinds; each is reported, then a lower opset is tried
            notes.append(f"opset {candidate}: {type(err).__name__}: {str(err).strip().splitlines()[0][:200]}")
    raise verify.VerificationError("no opset converts: " + " | ".join(notes), 0)


def to_float16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The generator's convolutions in float16 (their inputs, weights and biases cast to
    float16, the result back to float32), the rest as it is: the convolutions are nearly
    all of the generator's work, and the correspondence stays float32 (positions up to
    ~1000 pixels have no sub-pixel resolution in float16, as in mixed-precision training).
    A whole-graph converter (onnxconverter-common) breaks on the Loop bodies' references
    to outer values; ONNX Runtime folds the weight casts once, at load."""
    half = onnx.ModelProto()
    half.CopyFrom(proto)
    nodes = []
    for node in half.graph.node:
        if node.op_type != "Conv" or "/generator" not in node.name:
            nodes.append(node)
            continue
        inputs = []
        for i, name in enumerate(node.input):
            cast = f"{node.name}/float16_input{i}"
            nodes.append(onnx.helper.make_node("Cast", [name], [cast], to=onnx.TensorProto.FLOAT16, name=cast))
            inputs.append(cast)
        result = f"{node.name}/float16_output"
        conv = onnx.helper.make_node("Conv", inputs, [result], name=node.name)
        conv.attribute.extend(node.attribute)
        nodes += [conv, onnx.helper.make_node("Cast", [result], [node.output[0]], to=onnx.TensorProto.FLOAT,
                                              name=f"{result}/float32")]
    del half.graph.node[:]
    half.graph.node.extend(nodes)
    onnx.checker.check_model(half)
    return half


def session(path_or_bytes, providers: list[str] | None = None):
    import onnxruntime

    return onnxruntime.InferenceSession(path_or_bytes, providers=providers or ["CPUExecutionProvider"])


def check(translate, config: Config, proto: onnx.ModelProto, tolerance: float, label: str) -> list[str]:
    """Run `proto` in ONNX Runtime on the sample cases and compare with `translate`."""
    runner = session(proto.SerializeToString())
    names = [o.name for o in runner.get_outputs()]
    lines = []
    for case in verify.cases(config):
        reference = {k: v.numpy() for k, v in translate(**case.inputs).items()}
        got = dict(zip(names, runner.run(None, case.inputs)))
        result = verify.compare(reference, {k: got.get(k, np.zeros(0)) for k in reference}, case.uniform, tolerance,
                                strict_all=not model_kind(config).discrete_choices,
                                warp0_limit=config.export.tolerance / config.model.temperature)
        lines.append(f"{label} {case.name}: " + "; ".join(result.lines))
        if result.failed:
            raise verify.VerificationError(lines[-1], tolerance)
    return lines
