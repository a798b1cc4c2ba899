"""python -m cocosnet_tf.serving as a real process on 127.0.0.1: TF-Serving's REST API answers equal a
direct ONNX Runtime call, malformed requests get 400 naming the field, 20 concurrent
requests are each answered correctly or with 503, hostile clients (stalled bodies, deep
JSON, oversized bodies, garbage, early disconnects) get an answer and one log line,
SIGTERM stops it cleanly even with an idle keep-alive client; the SavedModel backend
with the encoded-image signature; python -m cocosnet_tf.serving.client."""

import base64
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_main
from cocosnet_tf.translate import Job, prepare
from cocosnet_tf.visualize import to_uint8
from cocosnet_tf.export import layout, verify
from cocosnet_tf.export.to_onnx import session
from cocosnet_tf.serving.client import main as client_main

QUEUE = 4
READ_TIMEOUT = 60  # longer than any test waits: connections end only when the server ends them
PREDICT = "/v1/models/cocosnet:predict"


def start(model_dir, log, *extra):
    """The server on a free port; returns (process, base URL) once it listens. REST only
    unless EXTRA has --grpc-port (tests/test_serving_grpc.py)."""
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = open(log, "w")
    grpc = [] if "--grpc-port" in extra else ["--no-grpc"]
    proc = subprocess.Popen([sys.executable, "-m", "cocosnet_tf.serving", "--model-dir", str(model_dir), "--port", "0",
                             *grpc, *extra], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", open(log).read())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {open(log).read()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start within 180 s")


def call(url, path, body=None, raw=None):
    """(status, parsed JSON body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(tiny_exports, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc, url = start(tiny_exports.onnx.parent, log, "--queue", str(QUEUE), "--max-batch", "2",
                      "--read-timeout", str(READ_TIMEOUT))
    runner = session(str(tiny_exports.onnx / layout.MODEL_FILE))
    yield SimpleNamespace(proc=proc, url=url, log=log, direct=lambda inputs: dict(
        zip([o.name for o in runner.get_outputs()], runner.run(None, inputs))))
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def instances(inputs):
    return [{k: v[i].tolist() for k, v in inputs.items()} for i in range(len(inputs["label"]))]


def connect(url):
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def post_head(length, extra=""):
    return f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


def exchange(url, data):
    """(status, headers, parsed JSON body) of the answer to `data`, sent as it is."""
    with connect(url) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.headers, json.loads(response.read())


def wait_until(condition, seconds=10.0):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


def log_size(server):
    """The log's length once the lines of earlier requests are in (each comes after its answer)."""
    size = -1
    while size != len(open(server.log).read()):
        size = len(open(server.log).read())
        time.sleep(0.3)
    return size


def log_since(server, offset):
    """The server's log lines after `offset`, once some have come and no more follow for 0.5 s."""
    def lines():
        return open(server.log).read()[offset:].splitlines()

    wait_until(lines)
    time.sleep(0.5)
    return lines()


def test_status_metadata_health(server):
    assert call(server.url, "/v1/models/cocosnet") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    code, meta = call(server.url, "/v1/models/cocosnet/metadata")
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert code == 200 and meta["model_spec"] == {"name": "cocosnet", "signature_name": "", "version": "1"}
    assert {k: (v["dtype"], [d["size"] for d in v["tensor_shape"]["dim"]]) for k, v in signature["inputs"].items()} \
        == {"label": ("DT_FLOAT", ["-1", "-1", "-1", "8"]), "exemplar": ("DT_FLOAT", ["-1", "-1", "-1", "3"]),
            "exemplar_label": ("DT_FLOAT", ["-1", "-1", "-1", "8"])}
    assert sorted(signature["outputs"]) == ["image", "warp0", "warp1"]
    code, health = call(server.url, "/healthz")
    assert code == 200 and health["status"] == "ok" and "CPUExecutionProvider" in health["backend"]
    assert call(server.url, "/v1/models/other")[0] == 404
    assert call(server.url, "/v1/models/cocosnet/versions/2")[0] == 404


def test_predict_equals_direct_call(server):
    inputs = verify.sample_inputs(8, (64, 96), [False, True], seed=3)
    direct = server.direct(inputs)
    code, rows = call(server.url, "/v1/models/cocosnet:predict", {"instances": instances(inputs)})
    assert code == 200 and len(rows["predictions"]) == 2
    for i, row in enumerate(rows["predictions"]):
        for name, value in row.items():
            np.testing.assert_allclose(np.asarray(value, np.float32), direct[name][i], atol=1e-6, rtol=0)
    code, columns = call(server.url, "/v1/models/cocosnet/versions/1:predict",
                         {"signature_name": "serving_default", "inputs": {k: v.tolist() for k, v in inputs.items()}})
    assert code == 200 and sorted(columns["outputs"]) == ["image", "warp0", "warp1"]
    for name, value in columns["outputs"].items():
        np.testing.assert_allclose(np.asarray(value, np.float32), direct[name], atol=1e-6, rtol=0)


def test_malformed_requests_are_400_naming_the_field(server):
    good = verify.sample_inputs(8, (64, 64), [True], seed=4)
    row = instances(good)[0]
    bad_exemplar = {**row, "exemplar": (np.asarray(row["exemplar"]) * 3).tolist()}
    cases = [
        (b"{not json", "request body"),
        ({"instances": [row], "inputs": {}}, "instances/inputs"),
        ({"instances": []}, "instances"),
        ({"instances": [row] * 3}, "the limit is 2"),
        ({"instances": [{k: v for k, v in row.items() if k != "exemplar"}]}, "instances[0].exemplar: missing"),
        ({"instances": [{**row, "label": "zebra"}]}, "instances[0].label"),
        ({"instances": [{**row, "label": np.zeros((64, 64, 5)).tolist()}]}, "instances[0].label: shape [64, 64, 5]"),
        ({"instances": [{**row, "extra": 1}]}, "instances.extra"),
        ({"instances": [bad_exemplar]}, "exemplar: values in"),
        ({"inputs": {k: np.asarray(v)[None, :40, :40].tolist() for k, v in row.items()}}, "multiples of 32"),
        ({"inputs": {**{k: np.asarray(v)[None].tolist() for k, v in row.items()},
                     "label": np.zeros((2, 64, 64, 8)).tolist()}}, "batch sizes differ"),
        ({"signature_name": "nope", "instances": [row]}, "signature_name"),
        ({"instances": [row], "mode": 1}, "mode: unknown field"),
    ]
    for body, field in cases:
        code, answer = call(server.url, "/v1/models/cocosnet:predict",
                            raw=body if isinstance(body, bytes) else json.dumps(body).encode())
        assert code == 400 and field in answer["error"], (field, code, answer)
    nan_row = json.dumps({"instances": [row]}).replace("0.0", "NaN", 1).encode()
    assert "finite" in call(server.url, "/v1/models/cocosnet:predict", raw=nan_row)[1]["error"]
    assert call(server.url, "/healthz")[0] == 200  # still serving


def test_twenty_concurrent_requests_each_correct_or_503(server):
    samples = [verify.sample_inputs(8, (64, 64), [i % 2 == 0], seed=100 + i) for i in range(20)]
    expected = [server.direct(s)["image"][0] for s in samples]
    bodies = [json.dumps({"instances": instances(s)}).encode() for s in samples]
    answers = [None] * 20
    barrier = threading.Barrier(20)

    def send(i):
        barrier.wait()
        answers[i] = call(server.url, "/v1/models/cocosnet:predict", raw=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    codes = [a[0] for a in answers]
    assert set(codes) <= {200, 503} and codes.count(200) >= 1, codes
    assert codes.count(503) >= 1, codes  # admission is bounded: 20 at once cannot all be admitted
    for i, (code, answer) in enumerate(answers):
        if code == 200:
            np.testing.assert_allclose(np.asarray(answer["predictions"][0]["image"], np.float32), expected[i],
                                       atol=1e-6, rtol=0)
        else:
            assert "busy" in answer["error"]
    assert call(server.url, "/healthz")[1]["in_flight"] == 0
    log = open(server.log).read()
    assert log.count(":predict 503") == codes.count(503) and log.count(":predict 200") >= codes.count(200)


def test_stalled_bodies_do_not_block_a_valid_request(server):
    # 2 x QUEUE clients announce 100 MB (under the limit), send 4 bytes, then nothing
    stalled = [connect(server.url) for _ in range(2 * QUEUE)]
    for sock in stalled:
        sock.sendall(post_head(100 * 2**20) + b"[[[[")
    try:
        inputs = verify.sample_inputs(8, (64, 64), [True], seed=11)
        started = time.time()
        code, answer = call(server.url, PREDICT, {"instances": instances(inputs)})
        assert code == 200, answer
        assert time.time() - started < READ_TIMEOUT / 2  # not after the stalled reads time out
        np.testing.assert_allclose(np.asarray(answer["predictions"][0]["image"], np.float32),
                                   server.direct(inputs)["image"][0], atol=1e-6, rtol=0)
        assert call(server.url, "/healthz")[1]["body_bytes"] == 4 * len(stalled)  # what they sent, no more
    finally:
        for sock in stalled:
            sock.close()
    assert wait_until(lambda: call(server.url, "/healthz")[1]["body_bytes"] == 0)


def test_hostile_bodies_get_400_413_and_one_log_line(server):
    row = instances(verify.sample_inputs(8, (64, 64), [True], seed=12))[0]

    def with_leaf(value):  # the row with one number of its label replaced
        label = [[list(pixel) for pixel in line] for line in row["label"]]
        label[1][2][3] = value
        return json.dumps({"instances": [{**row, "label": label}]}).encode()

    cases = [(b"[" * 100_000, 400, "nested 100000 deep"),
             (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested"),
             (with_leaf("0.5"), 400, 'instances[0].label[1][2][3]: "0.5" is not a number'),
             (with_leaf(True), 400, "instances[0].label[1][2][3]: true"),
             (with_leaf(False), 400, "instances[0].label[1][2][3]: false"),
             (with_leaf(None), 400, "instances[0].label[1][2][3]: null")]
    for body, status, message in cases:
        code, answer = call(server.url, PREDICT, raw=body)
        assert code == status and message in answer["error"], (message, code, answer)
    code, headers, answer = exchange(server.url, post_head(300 * 2**20))  # over --max-body-mb, body not sent
    assert code == 413 and "the limit is" in answer["error"] and headers["Connection"] == "close"

    before = log_size(server)
    code, headers, answer = exchange(server.url, b"\x16\x03\x01\x02\x00 garbage here\r\n\r\n")
    assert code == 400 and headers["Content-Type"] == "application/json" and "Bad request" in answer["error"]
    lines = log_since(server, before)
    assert len(lines) == 1 and " 400 " in lines[0], lines

    before = log_size(server)
    with connect(server.url) as sock:  # a whole request, then the connection reset before the answer
        sock.sendall(post_head(len(with_leaf(0.5))) + with_leaf(0.5))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    lines = log_since(server, before)
    assert len(lines) == 1 and "connection" in lines[0], lines
    assert call(server.url, "/healthz")[0] == 200


def test_client_saves_the_translation(server, tiny_exports, tmp_path, capsys):
    rng = np.random.default_rng(7)
    ids = np.repeat(np.repeat(rng.integers(0, 8, (2, 8, 8)), 8, axis=1), 8, axis=2).astype(np.uint8)
    photo = (rng.uniform(0, 255, (64, 64, 3))).astype(np.uint8)
    paths = {name: str(tmp_path / f"{name}.png") for name in ("label", "photo", "photo_label")}
    for name, array in zip(paths, (ids[0], photo, ids[1])):
        Image.fromarray(array).save(paths[name])
    config = str(tiny_exports.onnx / layout.CONFIG_FILE)
    out = tmp_path / "out.png"
    code, printed, err = run_main(client_main, ["--url", server.url, "--config", config, "--input", paths["label"],
                                                "--exemplar", paths["photo"], "--exemplar-input",
                                                paths["photo_label"], "--out", out], capsys)
    assert code == 0, err
    inputs = prepare(Job(paths["label"], paths["photo"], paths["photo_label"], str(out)), tiny_exports.config)
    expected = to_uint8(server.direct({k: v[None] for k, v in inputs.items()})["image"][0])
    assert np.array_equal(np.asarray(Image.open(out)), expected)
    code, _, err = run_main(client_main, ["--url", "http://127.0.0.1:9", "--config", config, "--input",
                                          paths["label"], "--exemplar", paths["photo"], "--exemplar-input",
                                          paths["photo_label"], "--out", tmp_path / "x.png"], capsys)
    assert code == 2 and "cannot reach the server" in err and not (tmp_path / "x.png").exists()


def test_savedmodel_backend_serves_both_signatures(tiny_exports, tmp_path):
    proc, url = start(tiny_exports.savedmodel.parent, tmp_path / "log", "--backend", "savedmodel")
    try:
        inputs = verify.sample_inputs(8, (64, 64), [True], seed=9)
        code, answer = call(url, "/v1/models/cocosnet:predict", {"instances": instances(inputs)})
        direct = session(str(tiny_exports.onnx / layout.MODEL_FILE)).run(["image"], inputs)[0]
        assert code == 200
        # TensorFlow against ONNX Runtime, a uniform exemplar: within the export tolerance
        assert np.abs(np.asarray(answer["predictions"][0]["image"]) - direct[0]).max() <= 1e-4
        ids = np.zeros((64, 64), np.uint8)
        ids[:, 32:] = 3
        pngs = {}
        for name, array in (("label", ids), ("exemplar", np.full((64, 64, 3), 120, np.uint8)),
                            ("exemplar_label", ids.T.copy())):
            path = tmp_path / f"{name}.png"
            Image.fromarray(array).save(path)
            pngs[name] = {"b64": base64.b64encode(path.read_bytes()).decode()}
        code, answer = call(url, "/v1/models/cocosnet:predict",
                            {"signature_name": "translate_encoded", "instances": [pngs]})
        assert code == 200, answer
        (tmp_path / "out.png").write_bytes(base64.b64decode(answer["predictions"][0]["image_bytes"]["b64"]))
        assert np.asarray(Image.open(tmp_path / "out.png")).shape == (64, 64, 3)
        broken = {**pngs, "label": {"b64": "not base64!"}}
        code, answer = call(url, "/v1/models/cocosnet:predict",
                            {"signature_name": "translate_encoded", "instances": [broken]})
        assert code == 400 and "instances[0].label" in answer["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def test_sigterm_stops_cleanly_with_an_idle_keep_alive_client(server):
    idle = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=60)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read() and idle.sock is not None  # open and idle, kept alive
    started = time.time()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0  # the idle connection would hold it READ_TIMEOUT seconds
    assert time.time() - started < 10
    assert idle.sock.recv(1) == b""  # the server closed it
    log = open(server.log).read()
    assert "received SIGTERM" in log and log.rstrip().endswith("stopped")
    assert "Traceback" not in log
