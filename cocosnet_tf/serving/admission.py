"""The served model and the limits both APIs share (REST and gRPC take places in the same
queue, charge the same body budget and run the model through the same workers).

A request is admitted only while fewer than `queue` requests are admitted (else it is
refused at once: REST 503, gRPC RESOURCE_EXHAUSTED), and at most `workers` of the
admitted ones run the model at a time (the backend already uses every core for one call;
more at once only adds memory).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np

from cocosnet_tf.serving.api import RequestError


@dataclass
class Limits:
    max_batch: int = 4
    max_body_bytes: int = 256 * 2**20
    queue: int = 8
    workers: int = 1
    read_timeout: float = 10.0  # seconds to send a body; seconds a connection may idle
    max_connections: int = 64
    body_budget_bytes: int = 1024 * 2**20  # request bodies in memory at once, over all connections


class Busy(Exception):
    """The request was refused for now: the queue or the body budget is full."""


class OutputError(Exception):
    """The model answered with values that cannot be sent (not finite)."""


class Budget:
    """Bytes of request bodies held in memory, over all connections."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self.lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self.lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self.lock:
            self.used -= size

    def busy_message(self) -> str:
        return f"server busy: request bodies in memory are at the limit ({self.limit} bytes); retry later"


class Model:
    """The served model: its name, version, backend, the admission semaphores and the body budget."""

    def __init__(self, name: str, version: str, backend, limits: Limits):
        self.name, self.version, self.backend, self.limits = name, version, backend, limits
        self.admitted = threading.BoundedSemaphore(limits.queue)
        self.running = threading.BoundedSemaphore(limits.workers)
        self.bodies = Budget(limits.body_budget_bytes)
        self.in_flight = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        """A place in the queue, until leave(); Busy at once when there is none."""
        if not self.admitted.acquire(blocking=False):
            raise Busy(f"server busy: {self.limits.queue} requests in progress; retry later")
        with self.lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1
        self.admitted.release()

    @contextlib.contextmanager
    def admit(self):
        """A place in the queue for the block (Busy when there is none)."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def predict(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The backend's outputs for checked inputs of an admitted request: RequestError when the
        model refuses them (e.g. the encoded signature's checks), OutputError when not finite."""
        with self.running:
            try:
                outputs = self.backend.predict(signature, arrays)
            except Exception as err:
                message = str(err).strip().splitlines()
                raise RequestError(f"{signature}: {message[0] if message else type(err).__name__}") from None
        if not all(np.isfinite(v).all() for v in outputs.values() if v.dtype != object):
            raise OutputError("the model's output is not finite")
        return outputs
