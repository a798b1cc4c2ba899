"""cocosnet_tf.memory: freed heap memory goes back to the system while the releaser runs."""

import ctypes
import math
import os
import time

import pytest

from cocosnet_tf.memory import MemoryReleaser, glibc_trim

CHUNK = 64 * 1024  # below glibc's mmap threshold: these come from the heap
CHUNKS = 4096  # 256 MiB


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fill_and_free_heap():
    """Allocate and touch CHUNKS heap chunks, free all but the last (which pins the
    heap's top, so that free() itself cannot give the pages back); returns that last one."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(CHUNK) for _ in range(CHUNKS)]
    for chunk in chunks:
        ctypes.memset(chunk, 1, CHUNK)
    for chunk in chunks[:-1]:
        libc.free(chunk)
    return libc, chunks[-1]


@pytest.mark.skipif(glibc_trim() is None, reason="malloc_trim needs glibc")
def test_the_releaser_returns_freed_heap_pages_and_stops_with_its_context():
    glibc_trim()(0)  # free chunks left by earlier tests would take the allocations below
    before = rss_mib()
    libc, pinned = fill_and_free_heap()
    try:
        held = rss_mib()
        if held - before < 200:
            pytest.skip(f"this malloc returned the freed chunks itself (RSS {before:.0f} -> {held:.0f} MiB)")
        time.sleep(0.3)
        assert rss_mib() - before > 200, "without the releaser the freed chunks stay resident"
        with MemoryReleaser(0.05) as releaser:
            assert releaser.available
            with pytest.raises(RuntimeError, match="already running"):
                releaser.__enter__()
            deadline = time.monotonic() + 5
            while rss_mib() - before > 100 and time.monotonic() < deadline:
                time.sleep(0.05)
            released = rss_mib()
            thread = releaser._thread
        assert released - before < 100, f"RSS {held:.0f} MiB with the chunks freed, {released:.0f} with the releaser"
        assert not thread.is_alive()
    finally:
        libc.free(pinned)


def test_interval_zero_starts_nothing_and_bad_intervals_are_errors():
    with MemoryReleaser(0) as releaser:
        assert not releaser.available and releaser._thread is None
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="release interval must be >= 0 seconds"):
            MemoryReleaser(bad)
