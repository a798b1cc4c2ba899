"""Time and peak memory of the correspondence network.

    python benchmarks/correspondence.py                      # the full table (long)
    python benchmarks/correspondence.py --sizes 128 256 --batches 1 --xla off

Every case runs in its own Python process, so that its peak RSS (the kernel's
high-water mark of the process, TensorFlow and the model included) is its own; a
process that passes --max-rss-gb is stopped and reported as such instead of taking
the machine down. Cases:

- forward: inference (`training=False`: fixed propagation order, chunked evaluation,
  no gradient), the official four levels with the model section of the config;
- train: forward + backward, an L1 loss on every level's warp, gradients of every
  trainable variable (`training=True`: random propagation order; only the gradient-free
  candidate evaluation is chunked), with gradient checkpointing (`runtime.recompute`)
  off and on (--recompute);
- dense: the baseline, dense softmax attention at every level (what PatchMatch
  replaces), forward only, where its N x N matrices fit.

With `--compiled-ops on` (beside `off`) every case also runs with PatchMatch's candidate
scores by the compiled op (`runtime.compiled_ops`). One case alone, as a command to time
from outside: `python benchmarks/correspondence.py --case JSON` with the keys of `cases`
in main() and `release_memory`.

Each case reports the first call (tracing, and XLA compilation when on) and the median
of --repeats further calls. The table is printed as markdown and all figures are
written to --out as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from harness import (add_common_arguments, current_rss_gb, guard_memory, markdown_table, peak_rss_gb,
                     run_cases, run_child, write_report)

MODES = ("forward", "train", "dense")


# ----------------------------------------------------------------------------- worker
def dense_everywhere(net, label, exemplar, exemplar_label):
    """The baseline: the coarsest level's dense attention at every level."""
    import tensorflow as tf

    from cocosnet_tf.layers.blocks import average_pool
    from cocosnet_tf.models.cocosnet.correspondence.network import dense_level, level_factor

    _, _, theta, phi = net.projections(label, exemplar, exemplar_label)
    warps = []
    for level, (q, r) in enumerate(zip(theta, phi)):
        warp, _, _, _ = dense_level(q, r, average_pool(exemplar, level_factor(level)), net.temperature,
                                 cycle=level == 0, hard_best=True)
        warps.append(warp)
    return tf.add_n([tf.reduce_sum(w) for w in warps])


def case_step(case: dict):
    """The case's computation, a function of no arguments on fixed random inputs."""
    import numpy as np
    import tensorflow as tf

    from cocosnet_tf.config import ModelConfig, RuntimeConfig
    from cocosnet_tf.models.cocosnet.correspondence.network import CorrespondenceNet
    from cocosnet_tf.runtime import runtime_settings

    tf.keras.utils.set_random_seed(0)
    size, batch, nc = case["size"], case["batch"], case["semantic_nc"]
    rng = np.random.default_rng(0)
    label = tf.constant(np.eye(nc, dtype=np.float32)[rng.integers(0, nc, (batch, size, size))])
    exemplar_label = tf.constant(np.eye(nc, dtype=np.float32)[rng.integers(0, nc, (batch, size, size))])
    exemplar = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
    with runtime_settings(RuntimeConfig(recompute=case["recompute"], compiled_ops=case["compiled_ops"])):
        net = CorrespondenceNet.from_config_object(ModelConfig(), nc)
    net(label[:, :16, :16], exemplar[:, :16, :16], exemplar_label[:, :16, :16])  # build the variables

    if case["mode"] == "forward":
        def step():
            out = net(label, exemplar, exemplar_label, training=False)
            return out["warps"][-1]
    elif case["mode"] == "train":
        def step():
            with tf.GradientTape() as tape:
                out = net(label, exemplar, exemplar_label, training=True)
                loss = tf.add_n([tf.reduce_mean(tf.abs(w - tf.image.resize(exemplar, tf.shape(w)[1:3])))
                                 for w in out["warps"]])
            grads = tape.gradient(loss, net.trainable_variables)
            return tf.add_n([tf.reduce_sum(tf.abs(g)) for g in grads if g is not None])
    else:
        def step():
            return dense_everywhere(net, label, exemplar, exemplar_label)
    return step


def run_case(case: dict) -> dict:
    guard_memory(case["max_rss_gb"])
    import numpy as np
    import tensorflow as tf

    step = case_step(case)
    fn = tf.function(step, jit_compile=case["xla"])
    idle = current_rss_gb()
    start = time.perf_counter()
    value = fn()
    first = time.perf_counter() - start
    if not np.all(np.isfinite(value.numpy())):
        raise FloatingPointError("non-finite output")
    times = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        fn().numpy()
        times.append(time.perf_counter() - start)
    return {"status": "ok", "first_call_s": round(first, 3), "median_s": round(statistics.median(times), 3),
            "idle_rss_gb": round(idle, 2), "peak_rss_gb": round(peak_rss_gb(), 2)}


# ----------------------------------------------------------------------------- driver
def dense_fits(size: int, batch: int, limit_gb: float) -> bool:
    """The finest level's scores, softmax and one temporary: 3 N^2 floats per image."""
    n = size * size
    return 3 * batch * n * n * 4 / 2**30 < limit_gb


COLUMNS = [("mode", "mode"), ("size", "size"), ("batch", "batch"), ("XLA", "xla"), ("recompute", "recompute"),
           ("compiled ops", "compiled_ops"), ("first call (s)", "first_call_s"), ("median (s)", "median_s"),
           ("peak RSS (GB)", "peak_rss_gb"), ("status", "status")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--semantic-nc", type=int, default=8)
    parser.add_argument("--recompute", nargs="+", choices=("off", "on"), default=["off", "on"],
                        help="gradient checkpointing in the train cases (the others have no backward pass)")
    parser.add_argument("--compiled-ops", nargs="+", choices=("off", "on"), default=["off"],
                        help="PatchMatch's scores by the compiled op (runtime.compiled_ops) or TensorFlow's ops")
    add_common_arguments(parser, "docs/results/correspondence.json", repeats=3)
    args = parser.parse_args(argv)
    if args.case:
        return run_child(run_case, args.case)

    cases = [{"mode": mode, "size": size, "batch": batch, "xla": xla == "on", "recompute": recompute == "on",
              "compiled_ops": compiled == "on", "repeats": args.repeats, "semantic_nc": args.semantic_nc,
              "max_rss_gb": args.max_rss_gb}
             for mode in args.modes for size in args.sizes for batch in args.batches for xla in args.xla
             for recompute in (args.recompute if mode == "train" else ["off"]) for compiled in args.compiled_ops]

    def skipped(case):
        if case["mode"] == "dense" and not dense_fits(case["size"], case["batch"], args.max_rss_gb):
            return f"skipped: N x N scores need > {args.max_rss_gb:g} GB"
        return None

    results = run_cases(__file__, cases, COLUMNS, args.timeout, skipped,
                        release_memory=args.release_memory)
    write_report(args.out, results, markdown_table(COLUMNS, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
