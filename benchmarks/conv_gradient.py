"""Memory and time of one convolution's forward + backward pass, TensorFlow's gradient
kernels against LeanConv2D's (cocosnet_tf/layers/lean_conv.py).

Each case runs in its own process and reports its peak RSS above the RSS before the
step (inputs and weights already allocated), and the median time of the further calls
(graph mode, the first call traces). Default cases: the update block's 7x7 convolution
of 32 channels and a SPADE 3x3 convolution of 128 hidden channels, at 512 x 512.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from harness import (add_common_arguments, current_rss_gb, guard_memory, markdown_table, peak_rss_gb,
                     run_cases, run_child, write_report)

CASES = {"7x7, 32 -> 64": (7, 32, 64), "3x3, 128 -> 64": (3, 128, 64)}


def run_case(case: dict) -> dict:
    guard_memory(case["max_rss_gb"])
    import tensorflow as tf

    from cocosnet_tf.layers.lean_conv import conv2d

    k, c_in, c_out = CASES[case["conv"]]
    size = case["size"]
    x = tf.random.stateless_normal([1, size, size, c_in], seed=[0, 0])
    kernel = tf.random.stateless_normal([k, k, c_in, c_out], seed=[0, 1]) * 0.01

    @tf.function(jit_compile=case["xla"])
    def step():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv2d(x, kernel, "SAME") if case["gradient"] == "lean" else tf.nn.conv2d(x, kernel, 1, "SAME")
            loss = tf.reduce_sum(y * y)
        dx, dk = tape.gradient(loss, [x, kernel])
        return tf.reduce_sum(dx) + tf.reduce_sum(dk)

    idle = current_rss_gb()
    step().numpy()
    times = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return {"status": "ok", "median_s": round(statistics.median(times), 3),
            "peak_above_idle_gb": round(peak_rss_gb() - idle, 2)}


COLUMNS = [("convolution", "conv"), ("size", "size"), ("XLA", "xla"), ("gradient", "gradient"),
           ("median (s)", "median_s"), ("peak RSS above idle (GB)", "peak_above_idle_gb"), ("status", "status")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--convs", nargs="+", choices=list(CASES), default=list(CASES))
    add_common_arguments(parser, "docs/results/conv_gradient.json", repeats=3)
    args = parser.parse_args(argv)
    if args.case:
        return run_child(run_case, args.case)
    cases = [{"conv": conv, "size": size, "xla": xla == "on", "gradient": gradient, "repeats": args.repeats,
              "max_rss_gb": args.max_rss_gb}
             for conv in args.convs for size in args.sizes for xla in args.xla for gradient in ("tensorflow", "lean")]
    results = run_cases(__file__, cases, COLUMNS, args.timeout, release_memory=args.release_memory)
    write_report(args.out, results, markdown_table(COLUMNS, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
