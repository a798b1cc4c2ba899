"""Give large freed tensors back to the operating system at once (glibc's malloc).

TensorFlow's CPU allocator takes its buffers from malloc. glibc serves a block above
the mmap threshold with a mapping of its own, unmapped when freed; smaller blocks come
from heap arenas, which keep freed memory for later requests. The threshold is dynamic:
freeing a mapped block raises it to that block's size, up to 32 MiB. After a few steps
every tensor up to 32 MiB therefore comes from the arenas, which keep the high-water
mark of a step's interleaved allocations, fragmented, as resident memory. Setting the
threshold fixes it (the adjustment stops) and keeps the process's RSS close to what its
live tensors use: README, "Correspondence network", has the 512 x 512 training figures.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 1 << 20  # bytes; smaller blocks keep glibc's fast reuse
M_MMAP_THRESHOLD = -3  # mallopt's parameter number, <malloc.h>


def return_freed_tensors() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD for this process. Returns False,
    changing nothing, where malloc is not glibc's (no mallopt) or where the user set
    MALLOC_MMAP_THRESHOLD_ themselves."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
