"""The HTTP side: routes of TF-Serving's REST API, admission control, one log line per request.

Concurrency: ThreadingHTTPServer gives each connection a thread, and at most
`max_connections` connections are open (more are answered 503 at once and closed), so
threads are bounded too. A predict body is read in full, within `read_timeout` seconds,
before the request may queue: a client that stalls mid-body holds only its connection,
never a place in the queue. Bodies are charged to a budget of bytes as they arrive
(past it, 503), so memory for bodies stays bounded however many clients send at once.
The request then takes a place in the queue it shares with gRPC (admission.py; none
free: 503 at once, with Retry-After).

A connection idle for `read_timeout` seconds between requests is closed. Closing the
server stops reading from every connection, so idle ones end at once while requests whose
body has arrived still get their answer.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cocosnet_tf.export.layout import FLOAT_SIGNATURE
from cocosnet_tf.serving import api
from cocosnet_tf.serving.admission import Busy, Model, OutputError

LOG = logging.getLogger("serving")
ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict)?$")
READ_CHUNK = 2**20  # bytes of a body read (and charged to the budget) at a time
MIN_SEND_RATE = 2**20  # bytes per second a client must read an answer at
RETRY = {"Retry-After": "1"}


def http_response(code: int, body: dict, headers: dict) -> bytes:
    """A whole JSON response, written at once (also where no handler runs: refused connections)."""
    data = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {int(code)} {HTTPStatus(code).phrase}", "Server: cocosnet-serving",
             "Content-Type: application/json", f"Content-Length: {len(data)}",
             *(f"{key}: {value}" for key, value in headers.items())]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model: Model  # set on the subclass made by make_server, with `timeout` (the idle timeout)
    _start: float | None = None  # when the request being answered arrived
    _batch = "-"

    def log_message(self, format, *args):  # noqa: A002  (BaseHTTPRequestHandler's signature)
        pass  # one line per request comes from _send instead

    def log_error(self, format, *args):  # noqa: A002
        LOG.info("%s %s", self.client_address[0], format % args)  # e.g. a connection idle past its timeout

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a malformed request line or headers), as JSON like every answer."""
        self._send(code, {"error": message or HTTPStatus(code).phrase}, close=True)

    def handle(self):
        try:
            super().handle()
        except OSError as err:  # the client went away (reset, broken pipe) while we read or wrote
            LOG.info("%s %s: connection lost (%s)", self.client_address[0],
                     getattr(self, "requestline", "") or "-", err)

    def parse_request(self):
        self._start, self._batch = time.perf_counter(), "-"
        return super().parse_request()

    def do_GET(self):
        if self.path in ("/healthz", "/health"):
            m = self.model
            return self._send(200, {"status": "ok", "model": m.name, "version": m.version,
                                    "backend": m.backend.description, "in_flight": m.in_flight,
                                    "body_bytes": m.bodies.used})
        match = self._route()
        if match is None:
            return
        if match["rest"] == ":predict":
            return self._send(405, {"error": "predict is POST"})
        if match["rest"] == "/metadata":
            return self._send(200, api.metadata(self.model.name, self.model.version, self.model.backend.signatures))
        return self._send(200, api.status(self.model.version))

    def do_POST(self):
        wants_close = self.close_connection
        self.close_connection = True  # until its body is read, the connection cannot carry another request
        match = self._route()
        if match is None:
            return
        if match["rest"] != ":predict":
            return self._send(405, {"error": "POST goes to /v1/models/NAME:predict"})
        length = self._content_length()
        if length is None:
            return
        body = bytearray()
        try:
            if self._read_body(length, body):
                self.close_connection = wants_close
                self._admit(body)
        finally:
            self.model.bodies.give(len(body))

    def _content_length(self) -> int | None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._send(411, {"error": "Content-Length: required"})
        limit = self.model.limits.max_body_bytes
        if int(length) > limit:
            return self._send(413, {"error": f"Content-Length: {int(length)} bytes; the limit is {limit} bytes "
                                             "per request"})
        return int(length)

    def _read_body(self, length: int, body: bytearray) -> bool:
        """Reads the body into `body` within the read timeout, charging it to the body budget as
        it arrives (the caller gives back len(body)); False when it was refused or the client left."""
        m = self.model
        deadline = time.monotonic() + m.limits.read_timeout
        try:
            while len(body) < length:
                self.connection.settimeout(max(deadline - time.monotonic(), 1e-3))
                chunk = self.rfile.read1(min(READ_CHUNK, length - len(body)))
                if not chunk:
                    LOG.info("%s %s: connection closed after %d of %d body bytes", self.client_address[0],
                             self.requestline, len(body), length)
                    return False
                if not m.bodies.take(len(chunk)):
                    self._send(503, {"error": m.bodies.busy_message()}, headers=RETRY)
                    return False
                body += chunk
        except TimeoutError:
            self._send(408, {"error": f"request body: {len(body)} of {length} bytes arrived within "
                                      f"{m.limits.read_timeout:g} s"})
            return False
        finally:
            self.connection.settimeout(self.timeout)
        return True

    def _admit(self, raw: bytearray) -> None:
        m = self.model
        try:
            with m.admit():
                signature, arrays, row = api.parse_predict(api.parse_json(raw), m.backend.signatures,
                                                           FLOAT_SIGNATURE, m.limits.max_batch)
                self._batch = len(next(iter(arrays.values())))
                outputs = m.predict(signature, arrays)
        except Busy as err:
            return self._send(503, {"error": str(err)}, headers=RETRY)
        except api.RequestError as err:
            return self._send(400, {"error": str(err)})
        except OutputError as err:
            return self._send(500, {"error": str(err)})
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
        """Answer, and log one line. `close`, or a connection that cannot carry another
        request (its client asked so, or a body was left unread), says Connection: close."""
        self.close_connection = self.close_connection or close
        headers = {**(headers or {}), **({"Connection": "close"} if self.close_connection else {})}
        data = http_response(code, body, headers)
        # sendall's timeout bounds the whole answer, so it grows with the answer's size
        self.connection.settimeout(self.timeout + len(data) / MIN_SEND_RATE)
        self.wfile.write(data)
        self.connection.settimeout(self.timeout)
        error = f" {body['error'][:200]}" if code >= 400 else ""
        took = f"{(time.perf_counter() - self._start) * 1e3:.0f} ms" if self._start else "- ms"
        LOG.info("%s %s %s %d %d bytes batch %s %s%s", self.client_address[0], self.command or "-",
                 getattr(self, "path", "-"), code, len(data), self._batch, took, error)
        self._start = None


class Server(ThreadingHTTPServer):
    # the listen backlog only holds connections until their thread starts (admission is
    # the queue semaphore): socketserver's 5 made bursts of clients see resets
    request_queue_size = 128
    daemon_threads = False  # server_close() waits for the requests in progress

    def __init__(self, address, handler, max_connections: int):
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            return self._refuse(request, client_address)
        with self.connections_lock:
            self.connections.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started, so none will give the slot back
            self._forget(request)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        self.slots.release()

    def _refuse(self, request, client_address) -> None:
        """Answer 503 without a thread: sending a short answer on a new socket does not block."""
        error = f"server busy: {self.max_connections} connections open; retry later"
        LOG.info("%s - - 503 %s", client_address[0], error)
        try:
            request.setblocking(False)
            request.send(http_response(503, {"error": error}, {**RETRY, "Connection": "close"}))
        except OSError:
            pass
        self.shutdown_request(request)

    def server_close(self):
        """Stops reading from every connection (idle ones end now; answers still go out), then
        waits for the handler threads."""
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:  # already closed by its handler
                    pass
        super().server_close()


def make_server(host: str, port: int, model: Model) -> Server:
    handler = type("ModelHandler", (Handler,), {"model": model, "timeout": model.limits.read_timeout})
    return Server((host, port), handler, model.limits.max_connections)
