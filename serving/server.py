"""The HTTP side: routes of TF-Serving's REST API, admission control, one log line per request.

Concurrency: ThreadingHTTPServer gives each connection a thread; a request is admitted
only while fewer than `queue` requests are admitted (else 503 at once, with Retry-After),
and at most `workers` of the admitted ones run the model at a time (the backend already
uses every core for one call; more at once only adds memory). So memory stays bounded
by `queue` request bodies and `workers` model calls, whatever the load.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from export.layout import FLOAT_SIGNATURE
from serving import api

LOG = logging.getLogger("serving")
ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict)?$")


@dataclass
class Limits:
    max_batch: int = 4
    max_body_bytes: int = 256 * 2**20
    queue: int = 8
    workers: int = 1


class Model:
    """The served model: its name, version, backend and the admission semaphores."""

    def __init__(self, name: str, version: str, backend, limits: Limits):
        self.name, self.version, self.backend, self.limits = name, version, backend, limits
        self.admitted = threading.BoundedSemaphore(limits.queue)
        self.running = threading.BoundedSemaphore(limits.workers)
        self.in_flight = 0
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "cocosnet-serving"
    protocol_version = "HTTP/1.1"
    model: Model  # set on the subclass made by make_server

    def log_message(self, format, *args):  # noqa: A002  (BaseHTTPRequestHandler's signature)
        pass  # one line per request comes from _send instead

    def do_GET(self):
        self._start = time.perf_counter()
        if self.path in ("/healthz", "/health"):
            m = self.model
            return self._send(200, {"status": "ok", "model": m.name, "version": m.version,
                                    "backend": m.backend.description, "in_flight": m.in_flight})
        match = self._route()
        if match is None:
            return
        if match["rest"] == ":predict":
            return self._send(405, {"error": "predict is POST"})
        if match["rest"] == "/metadata":
            return self._send(200, api.metadata(self.model.name, self.model.version, self.model.backend.signatures))
        return self._send(200, api.status(self.model.version))

    def do_POST(self):
        self._start = time.perf_counter()
        match = self._route()
        if match is None:
            return
        if match["rest"] != ":predict":
            return self._send(405, {"error": "POST goes to /v1/models/NAME:predict"})
        m = self.model
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self._send(411, {"error": "Content-Length: required"}, close=True)
        if int(length) > m.limits.max_body_bytes:
            return self._send(400, {"error": f"Content-Length: {int(length)} bytes; the limit is "
                                             f"{m.limits.max_body_bytes} bytes per request"}, close=True)
        if not m.admitted.acquire(blocking=False):
            self.rfile.read(int(length))  # keep the connection usable
            return self._send(503, {"error": f"server busy: {m.limits.queue} requests in progress; retry later"},
                              headers={"Retry-After": "1"})
        try:
            with m.lock:
                m.in_flight += 1
            self._predict(self.rfile.read(int(length)))
        finally:
            with m.lock:
                m.in_flight -= 1
            m.admitted.release()

    def _predict(self, raw: bytes) -> None:
        m = self.model
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return self._send(400, {"error": f"request body: not JSON ({err})"})
        try:
            signature, arrays, row = api.parse_predict(body, m.backend.signatures, FLOAT_SIGNATURE,
                                                       m.limits.max_batch)
        except api.RequestError as err:
            return self._send(400, {"error": str(err)})
        self._batch = len(next(iter(arrays.values())))
        with m.running:
            try:
                outputs = m.backend.predict(signature, arrays)
            except Exception as err:  # the model refused these inputs (e.g. the encoded signature's checks)
                message = str(err).strip().splitlines()
                return self._send(400, {"error": f"{signature}: {message[0] if message else type(err).__name__}"})
        if not all(np.isfinite(v).all() for v in outputs.values() if v.dtype != object):
            return self._send(500, {"error": "the model's output is not finite"})
        self._send(200, api.predict_response(outputs, row))

    def _route(self):
        match = ROUTE.match(self.path)
        if match is None:
            self._send(404, {"error": f"{self.path}: not found; the API is /v1/models/{self.model.name}"
                                      "[/versions/N][/metadata|:predict]"})
            return None
        version = match["version"]
        if match["name"] != self.model.name or (version is not None and version != self.model.version):
            self._send(404, {"error": f"Servable not found for request: {match['name']}"
                                      + (f" version {version}" if version else "")})
            return None
        return match

    def _send(self, code: int, body: dict, headers: dict | None = None, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        error = f" {body['error'][:200]}" if code >= 400 else ""
        LOG.info("%s %s %s %d %d bytes batch %s %.0f ms%s", self.client_address[0], self.command, self.path, code,
                 len(data), getattr(self, "_batch", "-"), (time.perf_counter() - self._start) * 1e3, error)


class Server(ThreadingHTTPServer):
    # the listen backlog only holds connections until their thread starts (admission is
    # the queue semaphore): socketserver's 5 made bursts of clients see resets
    request_queue_size = 128
    daemon_threads = False  # server_close() waits for the requests in progress


def make_server(host: str, port: int, model: Model) -> ThreadingHTTPServer:
    return Server((host, port), type("ModelHandler", (Handler,), {"model": model}))
