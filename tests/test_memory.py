"""cocosnet_tf.memory: freed large tensors leave the process's resident memory."""

import subprocess
import sys
import textwrap

import pytest

from cocosnet_tf import memory

# A freed 30 MiB block raises glibc's dynamic mmap threshold; then 100 blocks of 2 MiB
# come from the heap, and freeing all but the last (which pins the heap's top) returns
# nothing, unless the threshold is fixed below 2 MiB.
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from cocosnet_tf.memory import return_freed_tensors
    fixed = sys.argv[1] == "fixed" and return_freed_tensors()
    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    big = np.ones(30 << 18, np.float32)
    del big
    blocks = [np.ones(2 << 18, np.float32) for _ in range(100)]
    before, last = rss_mib(), blocks[-1]
    del blocks
    print(fixed, before - rss_mib())
""")


def returned_mib(mode: str) -> tuple[bool, float]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    fixed, mib = done.stdout.split()
    return fixed == "True", float(mib)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; mallopt is glibc's")
def test_freed_blocks_return_to_the_os_once_the_threshold_is_fixed():
    fixed, returned = returned_mib("fixed")
    if not fixed:
        pytest.skip("malloc here has no mallopt (not glibc)")
    assert returned > 150, f"freeing 99 x 2 MiB returned {returned:.0f} MiB"
    # the control: glibc's own dynamic threshold keeps them
    assert returned_mib("default") == (False, pytest.approx(0, abs=30))


def test_a_users_malloc_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.return_freed_tensors() is False
