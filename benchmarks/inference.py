"""Inference latency and peak memory of one translation per backend, and server throughput.

    python benchmarks/inference.py                          # runs/demo at 256 and 512
    python benchmarks/inference.py --run runs/mine --sizes 512 --backends onnx --repeats 10

The model is a trained run (--run, default runs/demo), translated at --sizes (the
networks are resolution-general). It is exported once with python -m cocosnet_tf.export (SavedModel
and ONNX, each verified; their time is reported). Why not the official model size with
random weights: its untrained features are so close to zero that their normalisation
amplifies rounding, and the ONNX export's parity checks refuse it (dense level 0.017 to
0.03 against its 0.01 limit), as they should. Then, one process per case (harness.py):
Keras (the model in a tf.function, XLA per --xla), the reloaded SavedModel, and ONNX
Runtime (CPU provider) translate one pair (batch 1) at each size: one warm-up call, then
--repeats timed calls (p50, p95) and the process's peak RSS. Last, python -m cocosnet_tf.serving
(ONNX Runtime) answers --requests predict requests at --server-size from --concurrency
client threads: requests/s, latency p50/p95 and 503s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import (ROOT, timed_calls, add_common_arguments, current_rss_gb, guard_memory, markdown_table, peak_rss_gb,
                     run_cases, run_child, write_report)

COLUMNS = [("backend", "backend"), ("size", "size"), ("first call (s)", "first_s"), ("p50 (s)", "p50_s"),
           ("p95 (s)", "p95_s"), ("peak RSS (GB)", "peak_rss_gb"), ("status", "status")]
SERVER_COLUMNS = [("size", "size"), ("requests", "requests"), ("concurrency", "concurrency"),
                  ("requests/s", "requests_per_s"), ("p50 (s)", "p50_s"), ("p95 (s)", "p95_s"), ("503", "busy"),
                  ("status", "status")]


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sample(semantic_nc: int, size: int, seed: int = 0) -> dict:
    from cocosnet_tf.export.verify import sample_inputs

    return sample_inputs(semantic_nc, (size, size), [False], seed)


def run_case(case: dict) -> dict:
    guard_memory(case["max_rss_gb"])
    inputs = sample(semantic_channels(case["run"]), case["size"])
    if case["backend"] == "onnx":
        from cocosnet_tf.export.to_onnx import session

        runner = session(case["onnx"])
        call = lambda: runner.run(None, inputs)  # noqa: E731
    else:
        import tensorflow as tf

        if case["backend"] == "savedmodel":
            serving = tf.saved_model.load(case["savedmodel"]).signatures["serving_default"]
            tensors = {k: tf.constant(v) for k, v in inputs.items()}
            call = lambda: {k: v.numpy() for k, v in serving(**tensors).items()}  # noqa: E731
        else:
            from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config

            model = load_model(load_run_config(case["run"], []), find_checkpoint(case["run"], None))
            fn = tf.function(lambda *x: model(*x), jit_compile=case["xla"])
            args = [tf.constant(inputs[k]) for k in ("label", "exemplar", "exemplar_label")]
            call = lambda: tf.nest.map_structure(lambda v: v.numpy(), fn(*args))  # noqa: E731
    idle = current_rss_gb()
    first, times = timed_calls(call, case["repeats"])
    return {"status": "ok", "first_s": round(first, 2), "p50_s": round(statistics.median(times), 3),
            "p95_s": round(percentile(times, 0.95), 3), "idle_rss_gb": round(idle, 2),
            "peak_rss_gb": round(peak_rss_gb(), 2)}


def semantic_channels(run: str) -> int:
    from cocosnet_tf.runs import load_run_config

    return load_run_config(run, []).data.semantic_nc


def export(kind: str, run: Path, base: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cocosnet_tf.export", kind, "--run", str(run), "--out", str(base)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"python -m cocosnet_tf.export {kind} failed:\n{done.stderr[-3000:]}")
    verified = [line for line in done.stdout.splitlines() if line.startswith("verified")]
    print(f"export {kind}: {time.perf_counter() - start:.0f} s\n  " + "\n  ".join(verified), flush=True)
    return {"kind": kind, "seconds": round(time.perf_counter() - start, 1), "verified": verified}


def serve_load(model_dir: Path, semantic_nc: int, size: int, requests: int, concurrency: int) -> dict:
    """Requests/s and latency of python -m cocosnet_tf.serving (ONNX Runtime) under `concurrency` clients."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = model_dir.parent / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "cocosnet_tf.serving", "--model-dir", str(model_dir), "--port", "0",
                             "--no-grpc", "--max-batch", "1", "--queue", str(2 * concurrency)], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        url = wait_for_url(proc, log)
        body = json.dumps({"instances": [{k: v[0].tolist() for k, v in sample(semantic_nc, size).items()}]}).encode()
        latencies, codes, lock = [], [], threading.Lock()
        pending = list(range(requests))

        def client():
            while True:
                with lock:
                    if not pending:
                        return
                    pending.pop()
                start = time.perf_counter()
                request = urllib.request.Request(f"{url}/v1/models/{model_dir.name}:predict", data=body)
                try:
                    with urllib.request.urlopen(request, timeout=3600) as response:
                        response.read()
                        code = response.status
                except urllib.error.HTTPError as err:
                    code = err.code
                with lock:
                    codes.append(code)
                    if code == 200:
                        latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(60)
    ok = codes.count(200)
    return {"size": size, "requests": requests, "concurrency": concurrency, "status": "ok" if ok else "failed",
            "requests_per_s": round(ok / wall, 3), "p50_s": round(statistics.median(latencies), 2) if ok else None,
            "p95_s": round(percentile(latencies, 0.95), 2) if ok else None, "busy": codes.count(503)}


def wait_for_url(proc, log: Path) -> str:
    import re

    for _ in range(1200):
        found = re.search(r"on (http://[\d.]+:\d+)", log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
        time.sleep(0.25)
    raise SystemExit("the server did not start in 5 minutes")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/demo", help="trained run directory (python -m cocosnet_tf.train)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--backends", nargs="+", choices=["keras", "savedmodel", "onnx"],
                        default=["keras", "savedmodel", "onnx"])
    parser.add_argument("--requests", type=int, default=8, help="server load: predict requests")
    parser.add_argument("--concurrency", type=int, default=4, help="server load: client threads")
    parser.add_argument("--server-size", type=int, default=256)
    parser.add_argument("--work-dir", default="runs/benchmark_inference", help="where the exports go")
    add_common_arguments(parser, "docs/results/inference.json", repeats=3)
    parser.set_defaults(xla=["off"])  # --xla applies to the Keras backend only
    args = parser.parse_args(argv)
    if args.case:
        return run_child(run_case, args.case)

    work = ROOT / args.work_dir
    run = (ROOT / args.run).resolve()
    if not (run / "config.yaml").is_file():
        raise SystemExit(f"--run {args.run}: not a training run (no config.yaml); train one first")
    exports = [export(kind, run, work / kind) for kind in ("savedmodel", "onnx")
               if not (work / kind / "cocosnet").is_dir()]
    common = {"run": str(run), "savedmodel": str(work / "savedmodel" / "cocosnet" / "1"),
              "onnx": str(work / "onnx" / "cocosnet" / "1" / "model.onnx"), "repeats": args.repeats,
              "max_rss_gb": args.max_rss_gb}
    cases = [{**common, "backend": backend, "size": size, "xla": xla == "on"} for size in args.sizes
             for backend in args.backends for xla in (args.xla if backend == "keras" else ["off"])]
    results = run_cases(__file__, cases, COLUMNS, args.timeout, release_memory=args.release_memory,
                        shown=lambda case: {"backend": case["backend"] + (" XLA" if case["xla"] else "")})
    server = serve_load(work / "onnx" / "cocosnet", semantic_channels(str(run)), args.server_size, args.requests,
                        args.concurrency)
    table = markdown_table(COLUMNS, results) + "\n\nserver (ONNX Runtime):\n\n" + markdown_table(SERVER_COLUMNS,
                                                                                                 [server])
    write_report(args.out, results + [{"server": server}] + [{"export": e} for e in exports], table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
