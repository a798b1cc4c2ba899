"""TF-Serving's REST API for this model: request parsing, validation and response bodies.

Predict requests are `{"signature_name": ..., "instances": [...]}` (row format: one object
per sample, or bare values when the signature has one input) or `{"inputs": {...}}`
(columnar: one batched value per input). Binary values are `{"b64": "..."}`; binary
outputs (names ending in _bytes) are returned that way, as TF-Serving does.
Every check failure is a RequestError whose message names the field. The gRPC API's
tensors go through the same checks (checked_inputs).
"""

from __future__ import annotations

import base64
import binascii
import json
import re

import numpy as np

from cocosnet_tf.serving.backends import Signature, Spec

MIN_SIDE, SIDE_MULTIPLE = 64, 32  # the network's sizes (cocosnet_tf.config)
MAX_DEPTH = 16  # a request nests 6 deep: {"instances": [{"label": [[[...]]]}]}
# a JSON string; an unterminated one runs to the end (the parser refuses it there), so that
# one pass finds every string in linear time whatever the body holds
STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.S)
LITERAL = re.compile(rb"true|false|null")  # outside strings, only these spell words
NESTING = np.zeros(256, np.int8)
NESTING[list(b"[{")], NESTING[list(b"]}")] = 1, -1
CHUNK = 2**22  # bytes per step of the nesting count (its running sum takes 8 bytes per byte)


class RequestError(ValueError):
    """A malformed or out-of-limits request (REST 400, gRPC INVALID_ARGUMENT)."""


def parse_json(raw: bytes):
    """The parsed request body. Its nesting is measured first: the parser follows nesting
    by recursion, so a deep body would exhaust the stack instead of getting an answer.
    true, false and null are refused, naming where they are: no field takes them, and
    numpy would silently read booleans among numbers as 1 and 0."""
    outside = STRING.sub(b'""', raw)
    depth = _deepest(outside)
    if depth > MAX_DEPTH:
        raise RequestError(f"request body: nested {depth} deep; requests nest at most {MAX_DEPTH} deep")
    try:
        body = json.loads(raw)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise RequestError(f"request body: not JSON ({err})") from None
    if LITERAL.search(outside):
        path, value = _first(body, "", lambda v: v is None or isinstance(v, bool))
        raise RequestError(f"{path or 'request body'}: {json.dumps(value)}; no field takes true, false or null")
    return body


def _deepest(outside: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text whose strings are removed."""
    codes = np.frombuffer(outside, np.uint8)
    depth = deepest = 0
    for start in range(0, len(codes), CHUNK):
        running = depth + np.cumsum(NESTING[codes[start:start + CHUNK]], dtype=np.int64)
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def _first(value, path: str, wrong) -> tuple[str, object] | None:
    """(path, value) of the first leaf in nested lists and objects for which wrong(leaf)."""
    if isinstance(value, dict):
        children = ((f"{path}.{k}" if path else k, v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return (path, value) if wrong(value) else None
    return next(filter(None, (_first(v, p, wrong) for p, v in children)), None)


def _not_number(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float))


def _array(name: str, value, spec: Spec, batched: bool) -> np.ndarray:
    """One input as an array of the spec's dtype and rank (`batched`: with the batch axis)."""
    if spec.dtype == "object":
        items = value if batched else [value]
        if not isinstance(items, list):
            raise RequestError(f"{name}: expected a list of {{\"b64\": ...}} values")
        return np.array([_binary(f"{name}[{i}]" if batched else name, v) for i, v in enumerate(items)], dtype=object)
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        array = None
    if array is None or array.dtype.kind not in "iuf":
        wrong = _first(value, name, _not_number)
        if wrong is not None:
            raise RequestError(f"{wrong[0]}: {json.dumps(wrong[1])[:40]} is not a number (send JSON numbers)")
        try:  # numbers numpy keeps as objects (integers beyond 64 bits), or a ragged nesting
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError(f"{name}: expected a nested list of numbers of shape "
                               f"{_shape_text(spec, batched)}") from None
    return _checked(name, array, spec, batched)


def _checked(name: str, array: np.ndarray, spec: Spec, batched: bool) -> np.ndarray:
    """`array` as the spec's dtype, once its rank, fixed axes and values fit (`batched`: with
    the batch axis)."""
    if (array.dtype == object) != (spec.dtype == "object"):  # only tensors can be either
        kinds = {True: "encoded images (DT_STRING)", False: "numbers (DT_FLOAT)"}
        raise RequestError(f"{name}: {kinds[array.dtype == object]} given; it takes {kinds[spec.dtype == 'object']}")
    rank = len(spec.shape) - (0 if batched else 1)
    if array.ndim != rank:
        raise RequestError(f"{name}: shape {list(array.shape)} (ragged or of rank {array.ndim}); expected "
                           f"{_shape_text(spec, batched)}")
    dims = spec.shape if batched else spec.shape[1:]
    for axis, (got, want) in enumerate(zip(array.shape, dims)):
        if want != -1 and got != want:
            raise RequestError(f"{name}: shape {list(array.shape)}; axis {axis} must be {want} "
                               f"(expected {_shape_text(spec, batched)})")
    if spec.dtype != "object" and not np.isfinite(array).all():
        raise RequestError(f"{name}: values must be finite")
    return array.astype(spec.dtype, copy=False)


def _binary(name: str, value) -> bytes:
    if not (isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)):
        raise RequestError(f"{name}: binary values are {{\"b64\": \"<base64>\"}}")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{name}: not valid base64") from None


def _shape_text(spec: Spec, batched: bool) -> str:
    dims = ["B" if i == 0 else "H" if i == 1 else "W" if i == 2 else str(d) if d != -1 else "?"
            for i, d in enumerate(spec.shape)]
    return "[" + ", ".join(dims if batched else dims[1:]) + "]"


def parse_predict(body, signatures: dict[str, Signature], default: str, max_batch: int) -> tuple[str, dict, bool]:
    """(signature name, input arrays, row format?) of a predict request body (parsed JSON)."""
    if not isinstance(body, dict):
        raise RequestError("request body: expected a JSON object with \"instances\" or \"inputs\"")
    unknown = set(body) - {"signature_name", "instances", "inputs"}
    if unknown:
        raise RequestError(f"{sorted(unknown)[0]}: unknown field; expected signature_name and instances or inputs")
    name, specs = signature_inputs(body.get("signature_name"), signatures, default)
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("instances/inputs: give exactly one of them")
    row = "instances" in body
    if row:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError("instances: expected a non-empty list")
        if len(instances) > max_batch:
            raise RequestError(f"instances: {len(instances)} samples; the limit is {max_batch} per request")
        arrays = {}
        for key, spec in specs.items():
            rows = []
            for i, instance in enumerate(instances):
                if not isinstance(instance, dict):
                    raise RequestError(f"instances[{i}]: expected an object with {sorted(specs)}")
                if key not in instance:
                    raise RequestError(f"instances[{i}].{key}: missing")
                rows.append(_array(f"instances[{i}].{key}", instance[key], spec, batched=False))
            if spec.dtype != "object" and len({r.shape for r in rows}) > 1:
                raise RequestError(f"instances[*].{key}: samples of different shapes cannot form one batch")
            arrays[key] = np.stack(rows) if spec.dtype != "object" else np.concatenate(rows)
        extra = {k for instance in instances for k in instance} - set(specs)
        if extra:
            raise RequestError(f"instances.{sorted(extra)[0]}: not an input of {name} (inputs: {sorted(specs)})")
    else:
        inputs = body["inputs"]
        if not isinstance(inputs, dict):
            raise RequestError(f"inputs: expected an object with {sorted(specs)}")
        _check_names("inputs", inputs, specs, name)
        arrays = {k: _array(f"inputs.{k}", inputs[k], spec, batched=True) for k, spec in specs.items()}
    _check_batch(arrays, specs, max_batch)
    return name, arrays, row


def signature_inputs(name: str | None, signatures: dict[str, Signature], default: str) -> tuple[str, dict]:
    """The signature called (`default` when unnamed) and its input specs."""
    name = name or default
    if name not in signatures:
        raise RequestError(f"signature_name: {name!r} is not a signature of this model (has {sorted(signatures)})")
    return name, signatures[name][0]


def checked_inputs(prefix: str, arrays: dict[str, np.ndarray], specs: dict[str, Spec], signature: str,
                   max_batch: int) -> dict[str, np.ndarray]:
    """Batched inputs that arrive as arrays (gRPC's tensors) through the checks of the JSON ones."""
    _check_names(prefix, arrays, specs, signature)
    arrays = {k: _checked(f"{prefix}.{k}", arrays[k], spec, batched=True) for k, spec in specs.items()}
    _check_batch(arrays, specs, max_batch)
    return arrays


def _check_names(prefix: str, given, specs: dict[str, Spec], signature: str) -> None:
    """Every input of the signature is given, and nothing else."""
    missing = [k for k in specs if k not in given]
    if missing:
        raise RequestError(f"{prefix}.{missing[0]}: missing")
    extra = set(given) - set(specs)
    if extra:
        raise RequestError(f"{prefix}.{sorted(extra)[0]}: not an input of {signature} (inputs: {sorted(specs)})")


def _check_batch(arrays: dict[str, np.ndarray], specs: dict[str, Spec], max_batch: int) -> None:
    """One batch size and image size over the inputs, sizes the network takes, value ranges."""
    batches = {k: len(a) for k, a in arrays.items()}
    if len(set(batches.values())) > 1:
        raise RequestError(f"inputs: batch sizes differ {batches}")
    batch = next(iter(batches.values()))
    if not 1 <= batch <= max_batch:
        raise RequestError(f"inputs: batch of {batch}; allowed 1..{max_batch}")
    floats = {k: a for k, a in arrays.items() if specs[k].dtype != "object"}
    sizes = {k: a.shape[1:3] for k, a in floats.items()}
    if len(set(sizes.values())) > 1:
        raise RequestError(f"inputs: images of different sizes {({k: list(v) for k, v in sizes.items()})}")
    for key, array in floats.items():
        h, w = array.shape[1:3]
        if min(h, w) < MIN_SIDE or h % SIDE_MULTIPLE or w % SIDE_MULTIPLE:
            raise RequestError(f"{key}: size {h}x{w}; height and width must be multiples of {SIDE_MULTIPLE}, "
                               f"at least {MIN_SIDE}")
        low, high = (-1.0, 1.0) if key == "exemplar" else (0.0, 1.0)
        if array.min() < low or array.max() > high:
            raise RequestError(f"{key}: values in [{array.min():g}, {array.max():g}]; expected [{low:g}, {high:g}]"
                               + (" (the photo scaled to [-1, 1])" if key == "exemplar" else ""))


def predict_response(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """TF-Serving's answer: {"predictions": [per sample]} or {"outputs": {name: batch}}."""
    def jsonable(name, value):
        if name.endswith("_bytes"):
            return [{"b64": base64.b64encode(v).decode("ascii")} for v in value]
        return value.tolist()

    columns = {k: jsonable(k, v) for k, v in outputs.items()}
    if not row:
        return {"outputs": columns}
    batch = len(next(iter(columns.values())))
    return {"predictions": [{k: v[i] for k, v in columns.items()} for i in range(batch)]}


def metadata(name: str, version: str, signatures: dict[str, Signature]) -> dict:
    """GET /v1/models/NAME/metadata, shaped as TF-Serving's GetModelMetadataResponse JSON."""
    dtypes = {"float32": "DT_FLOAT", "object": "DT_STRING"}

    def tensors(specs, prefix):
        return {k: {"dtype": dtypes.get(s.dtype, s.dtype), "name": f"{prefix}_{k}:0",
                    "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in s.shape], "unknown_rank": False}}
                for k, s in specs.items()}

    defs = {sig: {"inputs": tensors(i, sig), "outputs": tensors(o, "StatefulPartitionedCall"),
                  "method_name": "tensorflow/serving/predict"} for sig, (i, o) in signatures.items()}
    return {"model_spec": {"name": name, "signature_name": "", "version": version},
            "metadata": {"signature_def": {"signature_def": defs}}}


def status(version: str) -> dict:
    """GET /v1/models/NAME, as TF-Serving's GetModelStatusResponse JSON."""
    return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}
