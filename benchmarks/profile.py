"""Where the time goes: wall-clock, FLOPs and bytes per op group of inference and of a
training step, against the machine's own matrix-multiply peak.

    python benchmarks/profile.py                                  # 256 px, inference and train
    python benchmarks/profile.py --size 512 --modes inference --out docs/results/profile_512.json
    python benchmarks/profile.py --set runtime.compiled_ops=true  # any config override

The model is the default config's (the official widths: four correspondence levels, five
PatchMatch iterations, 128-channel SPADEs) with random weights, batch 1, at --size; the
training step is `CoCosNet.train_step` without the VGG-based losses (their weights are
not fetched here), on a synthetic batch. Each mode runs in its own process (harness.py):

- wall: the first call (tracing) and the median of --repeats further calls;
- per group: one more call under TensorFlow's profiler, whose per-op self times are
  summed by op group (the op's name scope) and turned into a share of that median: the
  group's wall-clock split (ops of one step run concurrently on the inter-op threads,
  so the summed op time can exceed the wall; the split is proportional);
- FLOPs and bytes per group: counted on the same computation traced as one flat graph
  (no chunks, no recomputation: the same arithmetic): 2 x multiply-adds of every
  convolution, matrix product and einsum (their gradients included), and the bytes of
  every op's outputs, what the group writes to memory;
- achieved GFLOP/s per group and overall, against the float32 peak the same process
  measures before and after the step (as shared a machine as the step): the best of
  numpy's sgemm and TensorFlow's matmul, 4096^3, all cores.

--trace-dir keeps the profiler's trace for TensorBoard's profile plugin. The table is
printed as markdown and written to --out as JSON.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import add_common_arguments, current_rss_gb, guard_memory, markdown_table, peak_rss_gb, run_cases, \
    run_child, timed_calls, write_report

MODES = ("inference", "train")
# the op groups, each the name scopes its ops carry: the first that matches an op's name
# (the innermost scopes come first) is its group
GROUPS = [
    ("bilinear gathers", ("bilinear_gather",)),
    ("final warp", ("final_warp",)),
    ("scoring and top-K", ("candidate_scoring",)),
    ("candidate propagation", ("propagation",)),
    ("ConvGRU", ("convgru", "refine_net", "initial_layer")),
    ("dense level", ("dense_level",)),
    ("U-Nets", ("adaptive_model_seg", "adaptive_model_img", "theta_", "phi_")),
    ("generator", ("generator",)),
    ("discriminator", ("discriminator",)),
]
OTHER = "other (losses, optimisers, glue)"
COLUMNS = [("mode", "mode"), ("group", "group"), ("wall (s)", "wall_s"), ("share", "share"),
           ("GFLOP", "gflop"), ("GFLOP/s", "gflop_per_s"), ("of peak", "of_peak"), ("GB written", "gb_written")]
FLOP_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul", "BatchMatMulV2", "BatchMatMulV3",
            "Einsum")


def group_of(name: str) -> str:
    lowered = name.lower()
    return next((group for group, scopes in GROUPS if any(scope in lowered for scope in scopes)), OTHER)


# ----------------------------------------------------------------------------- name scopes
def scope_groups() -> None:
    """Give the plain functions of the correspondence (the Keras layers have their names
    already) a name scope per group, for this process only."""
    import tensorflow as tf

    from cocosnet_tf.models.cocosnet.correspondence import network, patchmatch, sampling

    def scoped(name, fn):
        def inner(*args, **kwargs):
            with tf.name_scope(name):
                return fn(*args, **kwargs)
        return inner

    network.dense_level = scoped("dense_level", network.dense_level)
    patchmatch.propagate = scoped("propagation", patchmatch.propagate)
    sampling.sample = scoped("bilinear_gather", sampling.sample)
    level = patchmatch.PatchMatchLevel
    level._gather_selected = scoped("propagation", level._gather_selected)
    level._select = scoped("candidate_scoring", level._select)
    level._update = scoped("convgru", level._update)
    level._final_warp = scoped("final_warp", level._final_warp)


# ----------------------------------------------------------------------------- counting
def output_bytes(op) -> int:
    total = 0
    for tensor in op.outputs:
        if tensor.shape.is_fully_defined() and tensor.dtype.is_numpy_compatible:
            total += tensor.shape.num_elements() * tensor.dtype.size
    return total


def flops(op) -> int:
    """2 x multiply-adds of a convolution, a matrix product or an einsum (static shapes)."""
    import numpy as np

    if op.type not in FLOP_OPS:
        return 0
    shapes = [t.shape for t in op.inputs] + [t.shape for t in op.outputs]
    if not all(s.is_fully_defined() for s in shapes):
        return 0
    if op.type.startswith("Conv2D"):
        # forward: output x kernel window x in-channels; each gradient costs the same
        kernel = op.inputs[1].shape if op.type != "Conv2DBackpropFilter" else op.outputs[0].shape
        image = op.outputs[0].shape if op.type == "Conv2D" else (
            op.inputs[2].shape if op.type == "Conv2DBackpropInput" else op.inputs[2].shape)
        return 2 * int(np.prod(image[:-1])) * int(np.prod(kernel))
    if op.type == "Einsum":
        equation = op.get_attr("equation").decode()
        inputs, _ = equation.split("->")
        sizes = {}
        for labels, tensor in zip(inputs.split(","), op.inputs):
            sizes.update(zip(labels, tensor.shape))
        return 2 * int(np.prod([sizes[label] for label in sizes]))
    a = op.inputs[0].shape
    out = op.outputs[0].shape
    adj = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
    inner = a[-2] if adj else a[-1]
    return 2 * int(np.prod(out)) * int(inner)


def count(graph) -> dict:
    """{group: [flops, bytes written]} over every op of `graph` and of the functions it calls."""
    totals = {}

    def visit(g):
        for op in g.get_operations():
            entry = totals.setdefault(group_of(op.name), [0, 0])
            entry[0] += flops(op)
            entry[1] += output_bytes(op)
        for function in getattr(g, "_functions", {}).values():
            inner = getattr(function, "graph", None)
            if inner is not None:
                visit(inner)

    visit(graph)
    return totals


# ----------------------------------------------------------------------------- profiling
def op_self_times(trace_dir: str) -> dict:
    """{op name: host self time (s)} from the profiler's trace in `trace_dir`."""
    import json

    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    spaces = sorted(Path(trace_dir).rglob("*.xplane.pb"))
    data, ok = plugin.xspace_to_tools_data([str(spaces[-1])], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler's trace in {trace_dir} could not be read")
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [c["id"] for c in table["cols"]]
    name, self_time = columns.index("operation"), columns.index("total_self_time")
    times = {}
    for row in table["rows"]:
        cells = [c.get("v") if isinstance(c, dict) else c for c in row["c"]]
        if cells[name] != "IDLE":  # the profiler's name for the time no op ran
            times[cells[name]] = times.get(cells[name], 0.0) + float(cells[self_time]) / 1e6  # us -> s
    return times


def case_setup(case: dict):
    """(model, the mode's step as a function of no arguments, a flat twin of it for counting)."""
    import tensorflow as tf

    from cocosnet_tf.config import load_config
    from cocosnet_tf.data.pipeline import build_dataset
    from cocosnet_tf.models.cocosnet.model import CoCosNet

    size = case["size"]
    overrides = [f"data.crop_size=[{size},{size}]", "train.batch_size=1", "losses.vgg=0", "losses.perceptual=0",
                 "losses.contextual=0", *case["set"]]

    def made(extra):
        config = load_config(None, overrides + extra)
        tf.keras.utils.set_random_seed(0)
        model = CoCosNet(config, config.data.semantic_nc)
        model.build_all(size, size)
        if case["mode"] == "train":
            model.compile()
        return config, model

    config, model = made([])
    batch = next(iter(build_dataset(config.data, 1)))
    if case["mode"] == "inference":
        args = [batch[k] for k in ("label", "exemplar", "exemplar_label")]

        def step_of(m):
            fn = tf.function(lambda *x: m(*x)["image"])
            return fn, args
    else:
        def step_of(m):
            return tf.function(m.train_step), [batch]

    fn, args = step_of(model)
    _, flat = made(["runtime.chunk=0", "runtime.recompute=false"])
    flat_fn, flat_args = step_of(flat)
    return (lambda: tf.nest.map_structure(lambda v: v.numpy(), fn(*args))), (
        lambda: flat_fn.get_concrete_function(*flat_args).graph)


def run_case(case: dict) -> dict:
    guard_memory(case["max_rss_gb"])
    import tensorflow as tf

    scope_groups()
    call, flat_graph = case_setup(case)
    peaks = [sgemm_peak()]  # before and after the step: the machine's load moves
    first, times = timed_calls(call, case["repeats"])
    wall = statistics.median(times)
    peak = peak_rss_gb()

    trace_dir = case["trace_dir"] or tempfile.mkdtemp(prefix="profile-")
    tf.profiler.experimental.start(trace_dir)
    call()
    tf.profiler.experimental.stop()
    by_group = {}
    for name, seconds in op_self_times(trace_dir).items():
        by_group[group_of(name)] = by_group.get(group_of(name), 0.0) + seconds
    op_time = sum(by_group.values())
    counted = count(flat_graph())
    peaks.append(sgemm_peak())
    peak_gflops = {name: max(p[name] for p in peaks) for name in peaks[0]}
    groups = []
    for group in [g for g, _ in GROUPS] + [OTHER]:
        seconds = wall * by_group.get(group, 0.0) / op_time
        gflop, written = (v / 1e9 for v in counted.get(group, [0, 0]))
        groups.append({"group": group, "wall_s": round(seconds, 3), "share": f"{by_group.get(group, 0) / op_time:.1%}",
                       "gflop": round(gflop, 1), "gflop_per_s": round(gflop / seconds, 1) if seconds else None,
                       "of_peak": f"{gflop / seconds / peak_gflops['best']:.1%}" if seconds else None,
                       "gb_written": round(written, 2)})
    total_flop = sum(v[0] for v in counted.values()) / 1e9
    return {"status": "ok", "first_call_s": round(first, 2), "median_s": round(wall, 3),
            "op_time_s": round(op_time, 3), "peak_rss_gb": round(peak, 2), "idle_rss_gb": round(current_rss_gb(), 2),
            "sgemm_peak_gflops": peak_gflops, "peak": peak_gflops["best"], "gflop": round(total_flop, 1), "gflop_per_s": round(total_flop / wall, 1),
            "of_peak": f"{total_flop / wall / peak_gflops['best']:.1%}", "groups": groups}


# ----------------------------------------------------------------------------- peak
def sgemm_peak(n: int = 4096, repeats: int = 3) -> dict:
    """Best GFLOP/s of numpy's and of TensorFlow's float32 n^3 matrix product."""
    import numpy as np
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    tf.linalg.matmul(ta, tb).numpy()  # warm-up
    best = {"numpy": 0.0, "tensorflow": 0.0}
    for _ in range(repeats):
        for name, product in (("numpy", lambda: a @ b), ("tensorflow", lambda: tf.linalg.matmul(ta, tb).numpy())):
            start = time.perf_counter()
            product()
            best[name] = max(best[name], 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return {**{k: round(v, 1) for k, v in best.items()}, "best": round(max(best.values()), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides (the default config's model, synthetic data)")
    parser.add_argument("--trace-dir", default="", help="keep the profiler's trace here (TensorBoard's profile plugin)")
    add_common_arguments(parser, "docs/results/profile_256.json", repeats=3)
    parser.set_defaults(xla=["off"])
    args = parser.parse_args(argv)
    if args.case:
        return run_child(run_case, args.case)

    cases = [{"mode": mode, "size": args.size, "set": args.set, "repeats": args.repeats, "max_rss_gb": args.max_rss_gb,
              "trace_dir": str(Path(args.trace_dir) / mode) if args.trace_dir else ""} for mode in args.modes]
    summary = [("mode", "mode"), ("first call (s)", "first_call_s"), ("median (s)", "median_s"),
               ("summed op time (s)", "op_time_s"), ("GFLOP", "gflop"), ("GFLOP/s", "gflop_per_s"),
               ("sgemm peak (GFLOP/s)", "peak"), ("of peak", "of_peak"), ("peak RSS (GB)", "peak_rss_gb"),
               ("status", "status")]
    results = run_cases(__file__, cases, summary, args.timeout)
    rows = [{"mode": r["mode"], **g} for r in results for g in r.get("groups", [])]
    write_report(args.out, results, markdown_table(summary, results) + "\n\n" + markdown_table(COLUMNS, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
