"""TF-Serving's gRPC API of python -m cocosnet_tf.serving, called through the
tensorflow-serving-api package's own stubs. As a real process over the tiny ONNX export:
Predict gives the same image as REST for the same inputs, malformed tensors get
INVALID_ARGUMENT naming the field, unknown models and versions NOT_FOUND, GetModelStatus
says AVAILABLE, the client's --grpc, SIGTERM. In this process over a stub model: a flood
past the queue gets RESOURCE_EXHAUSTED and REST and gRPC share the queue and the body
budget, a message that never arrives gets DEADLINE_EXCEEDED, one over the size limit
RESOURCE_EXHAUSTED."""

import contextlib
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow_serving.apis", reason="tensorflow-serving-api is not installed (pip install --no-deps "
                                                      "'tensorflow-serving-api==2.21.*')")
import grpc  # noqa: E402  (grpcio comes with TensorFlow)
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,  # noqa: E402
                                     predict_pb2, prediction_service_pb2_grpc)

from conftest import run_main  # noqa: E402
from test_serving import call, instances, start  # noqa: E402
from cocosnet_tf.export import verify  # noqa: E402
from cocosnet_tf.serving import tensors  # noqa: E402
from cocosnet_tf.serving.admission import Limits, Model  # noqa: E402
from cocosnet_tf.serving.backends import Spec  # noqa: E402
from cocosnet_tf.serving.client import main as client_main  # noqa: E402
from cocosnet_tf.serving.grpc_service import GrpcServer  # noqa: E402
from cocosnet_tf.serving.server import make_server  # noqa: E402

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def server(tiny_exports, tmp_path_factory):
    log = tmp_path_factory.mktemp("grpc") / "server.log"
    proc, url = start(tiny_exports.onnx.parent, log, "--grpc-port", "0", "--max-batch", "2")
    target = re.search(r"and gRPC (127\.0\.0\.1:\d+)", open(log).read()).group(1)
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])
    yield SimpleNamespace(proc=proc, url=url, log=log, target=target, channel=channel,
                          predict=prediction_service_pb2_grpc.PredictionServiceStub(channel),
                          models=model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def predict_request(inputs, model="cocosnet", **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tensors.to_proto(value) if isinstance(value, np.ndarray) else value)
    return request


def status_of(call_fn, request):
    with pytest.raises(grpc.RpcError) as info:
        call_fn(request, timeout=60)
    return info.value.code(), info.value.details()


def test_predict_gives_the_image_rest_gives(server):
    inputs = verify.sample_inputs(8, (64, 96), [False, True], seed=21)
    answer = server.predict.Predict(predict_request(inputs), timeout=300)
    assert answer.model_spec.name == "cocosnet" and answer.model_spec.version.value == 1
    assert answer.model_spec.signature_name == "serving_default"
    code, rest = call(server.url, "/v1/models/cocosnet:predict", {"instances": instances(inputs)})
    assert code == 200 and sorted(answer.outputs) == ["image", "warp0", "warp1"]
    for name, tensor in answer.outputs.items():
        assert tensor.dtype == types_pb2.DT_FLOAT
        got = tensors.to_array(name, tensor)
        assert got.shape[0] == 2
        for i in range(2):
            np.testing.assert_array_equal(got[i], np.asarray(rest["predictions"][i][name], np.float32))
    only = server.predict.Predict(predict_request(inputs, version=1, signature_name="serving_default"),
                                  timeout=300)
    assert np.array_equal(tensors.to_array("image", only.outputs["image"]),
                          tensors.to_array("image", answer.outputs["image"]))
    filtered = predict_request(inputs)
    filtered.output_filter.append("image")
    assert list(server.predict.Predict(filtered, timeout=300).outputs) == ["image"]


def test_status_metadata_and_unknown_models(server):
    status = server.models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "cocosnet"}), timeout=60)
    (version,) = status.model_version_status
    assert version.version == 1 and version.state == version.AVAILABLE and version.status.error_code == 0
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "cocosnet"},
                                                             metadata_field=["signature_def"])
    metadata = server.predict.GetModelMetadata(request, timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signatures)
    inputs = signatures.signature_def["serving_default"].inputs
    assert {k: (v.dtype, [d.size for d in v.tensor_shape.dim]) for k, v in inputs.items()} == {
        "label": (types_pb2.DT_FLOAT, [-1, -1, -1, 8]), "exemplar": (types_pb2.DT_FLOAT, [-1, -1, -1, 3]),
        "exemplar_label": (types_pb2.DT_FLOAT, [-1, -1, -1, 8])}

    inputs = verify.sample_inputs(8, (64, 64), [True], seed=22)
    for request in (predict_request(inputs, model="other"), predict_request(inputs, version=2),
                    predict_request(inputs, version_label="stable")):
        code, details = status_of(server.predict.Predict, request)
        assert code == grpc.StatusCode.NOT_FOUND and "Servable not found" in details, details
    code, _ = status_of(server.models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "cocosnet", "version": {"value": 7}}))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = status_of(server.predict.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "cocosnet"}))
    assert code == INVALID and "metadata_field" in details


def test_malformed_tensors_get_invalid_argument_naming_the_field(server):
    good = verify.sample_inputs(8, (64, 64), [True], seed=23)
    short = tensors.to_proto(good["label"])
    short.tensor_content = short.tensor_content[:-4]
    double = tensors.to_proto(good["label"])
    double.dtype = types_pb2.DT_DOUBLE
    unknown_rank = tensors.to_proto(good["label"])
    unknown_rank.tensor_shape.unknown_rank = True
    nan = good["label"].copy()
    nan[0, 1, 2, 3] = np.nan
    cases = [
        ({**good, "label": short}, "inputs.label: tensor_content holds"),
        ({**good, "label": double}, "inputs.label: dtype DT_DOUBLE"),
        ({**good, "label": unknown_rank}, "inputs.label: tensor_shape: unknown rank"),
        ({**good, "label": np.array([b"png"], dtype=object)}, "inputs.label: encoded images (DT_STRING) given"),
        ({k: v for k, v in good.items() if k != "exemplar"}, "inputs.exemplar: missing"),
        ({**good, "extra": good["label"]}, "inputs.extra: not an input"),
        ({**good, "label": good["label"][..., :5]}, "inputs.label: shape [1, 64, 64, 5]"),
        ({**good, "exemplar": good["exemplar"] * 3}, "exemplar: values in"),
        ({**good, "label": nan}, "inputs.label: values must be finite"),
        ({k: v[:, :40, :40] for k, v in good.items()}, "multiples of 32"),
        ({k: np.concatenate([v] * 3) for k, v in good.items()}, "batch of 3; allowed 1..2"),
    ]
    for inputs, message in cases:
        code, details = status_of(server.predict.Predict, predict_request(inputs))
        assert code == INVALID and message in details, (message, code, details)
    code, details = status_of(server.predict.Predict, predict_request(good, signature_name="nope"))
    assert code == INVALID and "signature_name" in details
    request = predict_request(good)
    request.output_filter.append("warp9")
    code, details = status_of(server.predict.Predict, request)
    assert code == INVALID and "output_filter" in details
    garbage = server.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    code, details = status_of(garbage, b"\xff\xff\xff\xff not a protobuf")
    assert code == INVALID and "not a PredictRequest" in details
    assert server.models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "cocosnet"}), timeout=60).model_version_status  # still serving


def test_client_grpc_saves_what_rest_saves(server, tiny_exports, tmp_path, capsys):
    rng = np.random.default_rng(24)
    ids = np.repeat(np.repeat(rng.integers(0, 8, (2, 8, 8)), 8, axis=1), 8, axis=2).astype(np.uint8)
    paths = {name: str(tmp_path / f"{name}.png") for name in ("label", "photo", "photo_label")}
    for name, array in zip(paths, (ids[0], rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), ids[1])):
        Image.fromarray(array).save(paths[name])
    common = ["--config", str(tiny_exports.onnx / "assets.extra" / "config.yaml"), "--input", paths["label"],
              "--exemplar", paths["photo"], "--exemplar-input", paths["photo_label"]]
    code, _, err = run_main(client_main, ["--grpc", "--url", server.target, *common, "--out", tmp_path / "g.png"],
                            capsys)
    assert code == 0, err
    code, _, err = run_main(client_main, ["--url", server.url, *common, "--out", tmp_path / "r.png"], capsys)
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), np.asarray(Image.open(tmp_path / "r.png")))
    code, _, err = run_main(client_main, ["--grpc", "--url", "127.0.0.1:9", *common, "--out", tmp_path / "x.png"],
                            capsys)
    assert code == 2 and "cannot reach the server" in err and not (tmp_path / "x.png").exists()


def test_sigterm_stops_both_apis(server):
    assert server.models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "cocosnet"}), timeout=60)  # the channel is connected, now idle
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    log = open(server.log).read()
    assert log.rstrip().endswith("stopped") and "Traceback" not in log
    assert "gRPC GetModelStatus OK" in log  # one line per call


# ----------------------------------------------------------------------------- in this process, a stub model

class StubBackend:
    """One float input `x`; each predict waits until `release` is set."""

    description = "stub"
    signatures = {"serving_default": ({"x": Spec("float32", (-1, -1, -1, 3))}, {"y": Spec("float32", (-1,))})}

    def __init__(self):
        self.release, self.started = threading.Event(), threading.Semaphore(0)

    def predict(self, signature, arrays):
        self.started.release()
        assert self.release.wait(30)
        return {"y": arrays["x"].mean(axis=(1, 2, 3))}


@contextlib.contextmanager
def stub_servers(**limits):
    """The stub model behind both APIs in this process."""
    backend = StubBackend()
    model = Model("m", "1", backend, Limits(**limits))
    rest = make_server("127.0.0.1", 0, model)
    rest_thread = threading.Thread(target=rest.serve_forever, kwargs={"poll_interval": 0.05})
    rest_thread.start()
    grpc_server = GrpcServer("127.0.0.1", 0, model)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}")
    try:
        yield SimpleNamespace(backend=backend, model=model, rest=rest, channel=channel,
                              stub=prediction_service_pb2_grpc.PredictionServiceStub(channel))
    finally:
        backend.release.set()
        channel.close()
        grpc_server.join()
        rest.shutdown()
        rest.server_close()
        rest_thread.join()


X = {"x": np.full((1, 64, 64, 3), 0.5, np.float32)}


def rest_predict(rest):
    """The status code of a REST predict of X."""
    with socket.create_connection(rest.server_address[:2], timeout=30) as sock:
        body = ('{"instances": [{"x": %s}]}' % X["x"][0].tolist()).encode()
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return int(sock.makefile("rb").readline().split()[1])


def wait_until(condition, seconds=10.0):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_a_flood_past_the_queue_gets_resource_exhausted_and_rest_shares_the_queue():
    with stub_servers(queue=2, workers=2) as s, ThreadPoolExecutor(2) as pool:
        admitted = [pool.submit(s.stub.Predict, predict_request(X, model="m"), timeout=60) for _ in range(2)]
        for _ in range(2):
            assert s.backend.started.acquire(timeout=30)  # both are in the model, holding the queue
        flood = [status_of(s.stub.Predict, predict_request(X, model="m")) for _ in range(5)]
        assert all(code == grpc.StatusCode.RESOURCE_EXHAUSTED and "2 requests in progress" in details
                   for code, details in flood), flood
        assert rest_predict(s.rest) == 503  # the same queue
        s.backend.release.set()
        for future in admitted:
            assert tensors.to_array("y", future.result().outputs["y"]).tolist() == [0.5]
        assert s.model.in_flight == 0 and rest_predict(s.rest) == 200


def test_a_message_that_never_arrives_gets_deadline_exceeded():
    with stub_servers(read_timeout=0.5) as s:
        s.backend.release.set()
        never = threading.Event()

        def no_message():  # a client that opens the call and sends nothing
            never.wait(30)
            yield b""

        started = time.time()
        code, details = status_of(s.channel.stream_unary("/tensorflow.serving.PredictionService/Predict"),
                                  no_message())
        never.set()
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "within 0.5 s" in details
        assert time.time() - started < 10
        assert s.stub.Predict(predict_request(X, model="m"), timeout=30).outputs["y"]  # still serving


def test_the_size_limit_and_the_body_budget_shared_with_rest():
    with stub_servers(max_body_bytes=2**20, body_budget_bytes=2**20, read_timeout=30) as s:
        s.backend.release.set()
        big = predict_request({"x": np.zeros((1, 512, 512, 3), np.float32)}, model="m")  # 3 MB > 1 MB
        code, details = status_of(s.stub.Predict, big)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        with socket.create_connection(s.rest.server_address[:2], timeout=30) as held:
            # a REST body of 1 MiB announced, all but 48 kB of it sent and held
            held.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
                         + b"0" * 1_000_000)
            wait_until(lambda: s.model.bodies.used == 1_000_000)
            code, details = status_of(s.stub.Predict, predict_request(X, model="m"))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "request bodies" in details
        wait_until(lambda: s.model.bodies.used == 0)
        assert s.stub.Predict(predict_request(X, model="m"), timeout=30).outputs["y"]
