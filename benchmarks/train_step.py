"""Training speed and peak memory of `CoCosNet.train_step`.

    python benchmarks/train_step.py                          # demo config, 64 and 128 px
    python benchmarks/train_step.py --config configs/deepfashion_hd_512.yaml \\
        --set losses.vgg=0 losses.perceptual=0 losses.contextual=0 --sizes 128 256 --batch 1

One full training step (both optimisers, spectral power iterations, every loss of the
config) on a batch from the config's data source, at each --sizes crop, XLA off and on
(`train.jit_compile`: the gradient functions are compiled, the optimiser updates are
not). Every case runs in its own process (see harness.py); it reports the first step
(tracing, and XLA compilation when on), the median of --repeats further steps, steps/s
and the process's peak RSS. The table is printed as markdown and written to --out as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from harness import (add_common_arguments, current_rss_gb, guard_memory, markdown_table, peak_rss_gb,
                     run_cases, run_child, write_report)

COLUMNS = [("config", "config"), ("size", "size"), ("batch", "batch"), ("XLA", "xla"),
           ("first step (s)", "first_step_s"), ("median step (s)", "median_s"), ("steps/s", "steps_per_s"),
           ("peak RSS (GB)", "peak_rss_gb"), ("status", "status")]


def run_case(case: dict) -> dict:
    guard_memory(case["max_rss_gb"])
    import numpy as np
    import tensorflow as tf

    from cocosnet_tf.config import load_config
    from cocosnet_tf.data.pipeline import build_dataset
    from cocosnet_tf.models.cocosnet.model import CoCosNet

    size, batch = case["size"], case["batch"]
    overrides = [*case["set"], f"data.crop_size=[{size},{size}]", f"train.batch_size={batch}",
                 f"train.jit_compile={str(case['xla']).lower()}"]
    config = load_config(case["config"], overrides)
    tf.keras.utils.set_random_seed(config.train.seed)
    data = next(iter(build_dataset(config.data, batch)))
    model = CoCosNet(config, config.data.semantic_nc)
    model.build_all(size, size)
    model.compile()
    step = tf.function(model.train_step)

    idle = current_rss_gb()
    start = time.perf_counter()
    losses = step(data)
    first = time.perf_counter() - start
    if not all(np.isfinite(float(v)) for v in losses.values()):
        raise FloatingPointError(f"non-finite loss: {losses}")
    times = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        tf.nest.map_structure(lambda v: v.numpy(), step(data))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"status": "ok", "first_step_s": round(first, 2), "median_s": round(median, 3),
            "steps_per_s": round(1 / median, 3), "idle_rss_gb": round(idle, 2), "peak_rss_gb": round(peak_rss_gb(), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides for every case")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=None, help="default: the config's train.batch_size")
    add_common_arguments(parser, "docs/results/train_step.json", repeats=5)
    args = parser.parse_args(argv)
    if args.case:
        return run_child(run_case, args.case)

    if args.batch is None:
        from cocosnet_tf.config import load_config

        args.batch = load_config(args.config, args.set).train.batch_size
    cases = [{"config": args.config, "set": args.set, "size": size, "batch": args.batch, "xla": xla == "on",
              "repeats": args.repeats, "max_rss_gb": args.max_rss_gb} for size in args.sizes for xla in args.xla]
    results = run_cases(__file__, cases, COLUMNS, args.timeout, release_memory=args.release_memory)
    write_report(args.out, results, markdown_table(COLUMNS, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
