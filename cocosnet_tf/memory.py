"""Handing freed heap memory back to the operating system while TensorFlow runs.

TensorFlow's CPU tensors come from malloc. glibc keeps the chunks they free in its
heaps for reuse; pages inside a heap go back to the system only at its top, and tensors
below glibc's mmap threshold (which grows to 32 MiB as large blocks are freed) all live
in heaps. A training step at 512 x 512 frees gigabytes of transients of every size, so
the heaps fill with free chunks that the next allocations do not fit, and the process's
RSS climbs well above the tensors alive. `malloc_trim(0)` returns every free page of
every heap; a daemon thread calling it every few tenths of a second keeps the RSS near
what is alive, at the price of faulting those pages in again when they are reused
(docs/memory.md; docs/benchmarks.md has the 512 training step's peak RSS and time with
and without it).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import threading

log = logging.getLogger(__name__)


@functools.cache
def glibc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS, Windows).
    Under a preloaded jemalloc or tcmalloc this is still glibc's, which then finds
    nothing to return: those allocators keep their own memory (docs/memory.md)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_interval(value: float) -> float:
    """`value` as seconds between releases: finite and >= 0 (0: off), else ValueError."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"the memory release interval must be >= 0 seconds (and finite), got {value}")
    return float(value)


class MemoryReleaser:
    """A context in which a daemon thread calls malloc_trim(0) every `interval` seconds.

    `interval` 0 does nothing; so does a C library without malloc_trim (asking for a
    release there logs a warning). `available` says whether it releases anything: an
    interval and a malloc_trim. The thread stops when the context exits, exceptions
    included. Not re-entrant.
    """

    def __init__(self, interval: float):
        self.interval = release_interval(interval)
        self._trim = glibc_trim() if self.interval > 0 else None
        self._stop = threading.Event()
        self._thread = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._trim(0)

    def __enter__(self) -> "MemoryReleaser":
        if self._thread is not None:
            raise RuntimeError("this MemoryReleaser is already running")
        if self.interval > 0 and not self.available:
            log.warning("no malloc_trim in this C library: freed memory is not released every %g s", self.interval)
        if self.available:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
