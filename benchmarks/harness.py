"""What the benchmark scripts share: one process per case (so that its peak RSS is its
own), a memory guard, the machine description and a markdown table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def current_rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def timed_calls(call, repeats: int) -> tuple[float, list[float]]:
    """The first call's seconds (tracing included), then each of `repeats` more calls'."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times[0], times[1:]


def guard_memory(limit_gb: float) -> None:
    """Stop this process (exit 3) as soon as its RSS passes the limit."""

    def watch():
        while True:
            if current_rss_gb() > limit_gb:
                print(json.dumps({"status": f"stopped above {limit_gb:g} GB"}), flush=True)
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def release_seconds(text: str) -> float:
    """argparse type of --release-memory: cocosnet_tf.memory's rule for the interval."""
    from cocosnet_tf.memory import release_interval

    try:
        return release_interval(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_common_arguments(parser, out: str, repeats: int) -> None:
    """XLA off/on, repeats, the memory guard, the per-case timeout, --out and the hidden
    --case through which launch() runs one case."""
    parser.add_argument("--xla", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--max-rss-gb", type=float, default=20.0, help="stop a case whose RSS passes this")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--release-memory", type=release_seconds, default=0.0, metavar="SECONDS",
                        help="return freed heap memory to the system every SECONDS (cocosnet_tf.memory); 0: off")
    parser.add_argument("--out", default=out)
    parser.add_argument("--case", help=argparse.SUPPRESS)


def run_child(run_case, case_json: str) -> int:
    """The --case branch of a script: run one case, inside the memory releaser it asks
    for, and print its result as the JSON line launch() reads."""
    from cocosnet_tf.memory import MemoryReleaser

    case = json.loads(case_json)
    with MemoryReleaser(case["release_memory"]):
        result = run_case(case)
    print(json.dumps(result), flush=True)
    return 0


def launch(script: str, case: dict, timeout: float) -> dict:
    """Run `script --case JSON` in a fresh process; its last JSON line is the result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run([sys.executable, script, "--case", json.dumps(case)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"failed (exit {done.returncode}): {tail[:200]}"}


def run_cases(script: str, cases: list[dict], columns: list[tuple[str, str]], timeout: float,
              skipped=lambda case: None, shown=lambda case: {}, release_memory: float = 0.0) -> list[dict]:
    """Each case through launch() (unless `skipped` gives a reason), its table row printed
    as it finishes; result rows are the case, then `shown` (display values), then the result.
    `release_memory` is the --release-memory interval every case runs with."""
    results = []
    for case in cases:
        case = {**case, "release_memory": release_memory}
        reason = skipped(case)
        result = {"status": reason} if reason else launch(script, case, timeout)
        results.append({**case, **shown(case), **result})
        print(markdown_table(columns, results[-1:]).splitlines()[-1], flush=True)
    return results


def machine() -> dict:
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory, 1), "python": platform.python_version(),
            "tensorflow": tf.__version__, "gpus": len(tf.config.list_physical_devices("GPU")),
            # the allocator changes peak RSS and speed (docs/benchmarks.md, "Allocators")
            "malloc": os.environ.get("LD_PRELOAD") or "glibc"}


def markdown_table(columns: list[tuple[str, str]], results: list[dict]) -> str:
    """columns: (header, result key); a missing value prints as '-', booleans as on/off."""
    def cell(value):
        return "-" if value is None else ("on" if value is True else "off" if value is False else value)

    rows = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    rows += ["| " + " | ".join(str(cell(r.get(k))) for _, k in columns) + " |" for r in results]
    return "\n".join(rows)


def write_report(out: str, results: list[dict], table: str) -> None:
    from cocosnet_tf.fileio import atomic_write_text

    report = {"machine": machine(), "results": results}
    atomic_write_text(Path(out), json.dumps(report, indent=2) + "\n")
    print(f"\nmachine: {report['machine']}\n\n{table}\n\nwritten: {out}")
