"""Where a correspondence training step's memory goes: the tensors alive at the
allocator's peak, by the op that made them.

    python benchmarks/allocator_profile.py --size 256            # recompute on
    python benchmarks/allocator_profile.py --size 512 --top 40

One process, one graph-mode step of benchmarks/correspondence.py's train case (batch
1, official model settings), run once to trace and once under the TensorFlow profiler
with the BFC allocator (`TF_CPU_ALLOCATOR_USE_BFC=true`, set here: only it reports its
allocations). Printed and written to --out as JSON: the process's RSS when idle, after
tracing and after the first call; the allocator's peak during the profiled step; and
the largest groups of tensors alive at that peak (op name without its numeric suffixes,
and shape). The RSS above the allocator's peak is the graph, its optimisation and
malloc's own keeping, which no checkpointing reduces. The profiler's buffers raise the
process's peak RSS, so that figure is not the benchmark's.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import tempfile
import time
from collections import Counter

from harness import current_rss_gb, markdown_table, write_report

EVENTS = ("MemoryAllocation", "MemoryDeallocation")
COLUMNS = [("op", "op"), ("shape", "shape"), ("tensors", "count"), ("MB", "mb")]


def stat_value(plane, stat):
    """A stat's value; strings such as the op name may be stored once, as a reference."""
    if stat.ref_value:
        return plane.stat_metadata[stat.ref_value].name
    return stat.str_value or stat.int64_value or stat.uint64_value


def memory_events(logdir: str) -> list[tuple[int, str, dict]]:
    """(time in ps, event name, stats) of every allocator event in the profile, in time order."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no profile written under {logdir}")
    space = xplane_pb2.XSpace()
    with open(max(paths, key=os.path.getmtime), "rb") as f:
        space.ParseFromString(f.read())
    events = []
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name in EVENTS:
                    stats = {plane.stat_metadata[s.metadata_id].name: stat_value(plane, s) for s in event.stats}
                    events.append((line.timestamp_ns * 1000 + event.offset_ps, name, stats))
    return sorted(events, key=lambda e: e[0])


def live_at_peak(events) -> tuple[int, list[dict]]:
    """The allocator's peak (bytes in use) and the allocations alive at that moment."""
    if not events:
        raise ValueError("the profile holds no allocator events (is the BFC allocator on?)")
    peak = max(range(len(events)), key=lambda i: int(events[i][2].get("bytes_allocated") or 0))
    live = {}
    for _, name, stats in events[:peak + 1]:
        if name == "MemoryAllocation":
            live[stats.get("addr")] = stats
        else:
            live.pop(stats.get("addr"), None)
    return int(events[peak][2]["bytes_allocated"]), list(live.values())


def op_group(op: str) -> str:
    """An op's name without the numeric suffixes that tell its copies apart
    (`map_3/while/body/_861/Slice_2` -> `map/while/body/Slice`)."""
    return re.sub(r"_\d+(?=/|$)", "", op).replace("//", "/")


def grouped(allocations: list[dict]) -> list[dict]:
    """Allocations summed by (op without numeric suffixes, shape), largest first."""
    sizes, counts = Counter(), Counter()
    for stats in allocations:
        op = op_group(str(stats.get("tf_op") or "?"))
        key = (op, str(stats.get("shape") or ""))
        sizes[key] += int(stats.get("requested_bytes") or 0)
        counts[key] += 1
    return [{"op": op, "shape": shape, "count": counts[(op, shape)], "mb": round(size / 1e6, 1)}
            for (op, shape), size in sizes.most_common()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--recompute", choices=("on", "off"), default="on")
    parser.add_argument("--top", type=int, default=25, help="groups to print")
    parser.add_argument("--out", default="docs/results/allocator_profile.json")
    args = parser.parse_args(argv)
    if args.size < 16 or args.size % 8 or args.top < 1:
        parser.error("--size must be a multiple of 8 and >= 16, --top >= 1")
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"  # before TensorFlow starts
    import tensorflow as tf

    from correspondence import case_step

    step = tf.function(case_step({"mode": "train", "size": args.size, "batch": 1, "semantic_nc": 8,
                                  "recompute": args.recompute == "on"}))
    idle = current_rss_gb()
    start = time.perf_counter()
    step.get_concrete_function()
    traced, trace_s = current_rss_gb(), time.perf_counter() - start
    step().numpy()
    first = current_rss_gb()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        step().numpy()
        tf.profiler.experimental.stop()
        peak, allocations = live_at_peak(memory_events(logdir))
    groups = grouped(allocations)
    row = {"size": args.size, "recompute": args.recompute, "idle_rss_gb": round(idle, 2),
           "traced_rss_gb": round(traced, 2), "trace_s": round(trace_s, 1), "first_call_rss_gb": round(first, 2),
           "allocator_peak_gb": round(peak / 2**30, 2),
           "live_at_peak_gb": round(sum(int(a.get("requested_bytes") or 0) for a in allocations) / 2**30, 2),
           "groups": groups}
    summary = {k: v for k, v in row.items() if k != "groups"}
    write_report(args.out, [row], f"{summary}\n\n" + markdown_table(COLUMNS, groups[:args.top]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
