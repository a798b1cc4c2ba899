"""The server's limits on hostile clients, in this process over a stub model (no model
runs): connections past --max-connections get 503 at once, bodies past the body budget
get 503, a body that does not arrive within --read-timeout gets 408, a keep-alive
connection idle that long is closed, and closing the server ends idle connections."""

import contextlib
import http.client
import json
import socket
import threading
import time
from types import SimpleNamespace

from cocosnet_tf.serving.admission import Limits, Model
from cocosnet_tf.serving.server import make_server

MB = 2**20


@contextlib.contextmanager
def serving(**limits):
    stub = SimpleNamespace(signatures={}, description="stub", predict=None)
    server = make_server("127.0.0.1", 0, Model("m", "1", stub, Limits(**limits)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def connect(server):
    return socket.create_connection(server.server_address[:2], timeout=10)


def answer(sock):
    """(status, headers, parsed JSON body) of the next response on `sock`."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.headers, json.loads(response.read())


def head(length):
    return f"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def health(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return answer(sock)[2]


def wait_until(condition, seconds=5.0):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_connections_past_the_cap_get_503_at_once():
    with serving(max_connections=2) as server:
        held = [connect(server) for _ in range(2)]
        wait_until(lambda: len(server.connections) == 2)
        with connect(server) as third:
            code, headers, body = answer(third)
        assert code == 503 and headers["Retry-After"] and "2 connections open" in body["error"]
        held.pop().close()
        wait_until(lambda: len(server.connections) == 1)
        assert health(server)["status"] == "ok"  # a freed slot serves again
        held.pop().close()


def test_bodies_past_the_budget_get_503():
    with serving(max_body_bytes=MB, body_budget_bytes=MB + MB // 2) as server:
        with connect(server) as slow, connect(server) as second:
            slow.sendall(head(MB) + b"0" * (MB * 3 // 4))  # 0.75 MB of 1 MB, then nothing
            wait_until(lambda: health(server)["body_bytes"] == MB * 3 // 4)
            second.sendall(head(MB) + b"0" * MB)
            code, headers, body = answer(second)
            assert code == 503 and headers["Retry-After"] and "request bodies" in body["error"]
        wait_until(lambda: health(server)["body_bytes"] == 0)  # given back when the connections end


def test_a_stalled_body_gets_408_and_an_idle_connection_is_closed():
    with serving(read_timeout=0.5) as server:
        with connect(server) as sock:
            started = time.time()
            sock.sendall(head(100) + b"[[[[")
            code, headers, body = answer(sock)
            assert code == 408 and "4 of 100 bytes" in body["error"] and headers["Connection"] == "close"
            assert time.time() - started < 5
        with connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer(sock)[0] == 200
            started = time.time()
            assert sock.recv(1) == b""  # closed after 0.5 s idle
            assert time.time() - started < 5


def test_closing_the_server_ends_idle_connections():
    with serving(read_timeout=60) as server:
        idle = connect(server)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(idle)[0] == 200
        started = time.time()
    assert time.time() - started < 5  # not the 60 s idle timeout
    assert idle.recv(1) == b""
    idle.close()
