"""What the flow supervision does: the same training with and without it, side by side.

    python benchmarks/flow_ablation.py                                  # configs/demo.yaml
    python benchmarks/flow_ablation.py --config configs/edges_demo.yaml --set data.root=data/photos

Trains the config twice with `python -m cocosnet_tf.train`, each in its own process, one
after the other, for the config's train.steps: (a) the official losses only
(losses.flow 0) and (b) the official losses plus the flow supervision (losses.flow as
the config has it, or --flow). Both runs take the same steps on the same data in the
same order, so their budgets differ only by the flow loss's own cost; each one's wall
clock is in the table. From each run's heldout.json (train.py's held-out report) the
table gives, per correspondence level, the EPE and PCK@1/3 of the model, of the zero
flow, of the coarsest level upsampled and of the model with its ConvGRU flow heads
zeroed; then the finest warp's PSNR against the unwarped exemplar, and the output's
PSNR, SSIM and colour distance to the exemplar (against the target's). Markdown on
stdout, everything as JSON in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import ROOT, write_report

METHODS = ("model", "zero_flow", "coarsest_upsampled", "flow_heads_zeroed")


def train(config: str, overrides: list[str], run_dir: Path) -> float:
    """Train one run in its own process; its wall clock in seconds."""
    args = [sys.executable, "-m", "cocosnet_tf.train", "--config", config, "--run-dir", str(run_dir)]
    if overrides:
        args += ["--set", *overrides]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"error: training {run_dir} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def rows_of(name: str, seconds: float, report: dict) -> list[dict]:
    rows = []
    for entry in report["levels"]:
        for method in (m for m in METHODS if m in entry):
            figures = entry[method]
            rows.append({"run": name, "seconds": round(seconds), "level": f"{entry['level']} (1/{entry['factor']})",
                         "flow": method, "epe": figures["epe"], "pck1": figures["pck"]["1"],
                         "pck3": figures["pck"]["3"]})
    return rows


def number(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: list[dict]) -> str:
    lines = ["| run | level | flow | EPE (level px) | PCK@1 | PCK@3 |", "|---|---|---|---|---|---|"]
    for result in results:
        for row in rows_of(result["run"], result["seconds"], result["heldout"]):
            lines.append(f"| {row['run']} | {row['level']} | {row['flow'].replace('_', ' ')} | {number(row['epe'])} | "
                         f"{number(row['pck1'])} | {number(row['pck3'])} |")
    lines += ["", "| run | wall clock (s) | finest EPE / zero flow | ConvGRU: EPE change vs heads zeroed | "
              "warp PSNR (dB) | unwarped exemplar PSNR (dB) | output PSNR (dB) | output SSIM | "
              "colour distance output / target |", "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        h = result["heldout"]
        gain = h.get("refinement_gain")
        lines.append(f"| {result['run']} | {result['seconds']:.0f} | {number(h['epe_ratio'])} | "
                     f"{'-' if gain is None else f'{-100 * gain:+.0f} %'} | {number(h['warp_psnr'])} | "
                     f"{number(h['exemplar_psnr'])} | {number(h['output_psnr'])} | {number(h['output_ssim'], 3)} | "
                     f"{number(h['colour_output_vs_exemplar'], 3)} / {number(h['colour_target_vs_exemplar'], 3)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--flow", type=float, default=None, help="losses.flow of run (b) (default: the config's)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "flow_ablation"), help="folder of the two runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "flow_ablation.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from cocosnet_tf.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        parser.error(str(err))
    flow = config.losses.flow if args.flow is None else args.flow
    if not flow > 0:
        parser.error("run (b) needs a positive losses.flow: pass --flow")
    results = []
    for name, weight in (("(a) official losses", 0.0), ("(b) official + flow", flow)):
        run_dir = Path(args.runs) / ("official" if weight == 0 else "flow")
        if run_dir.exists():
            parser.error(f"{run_dir} exists: remove it or pass another --runs")
        seconds = train(args.config, args.overrides + [f"losses.flow={weight}"], run_dir)
        heldout = json.loads((run_dir / "heldout.json").read_text())
        results.append({"run": name, "losses.flow": weight, "seconds": seconds, "heldout": heldout})
        print(f"{name}: {seconds:.0f} s, finest EPE / zero flow {heldout['epe_ratio']:.2f}", flush=True)
    table = markdown(results)
    write_report(args.out, [{"config": args.config, "set": args.overrides, **r} for r in results], table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
