"""Training ablations: the same training with and without something, side by side.

    python benchmarks/ablation.py                                  # the flow supervision, configs/demo.yaml
    python benchmarks/ablation.py --config configs/edges_demo.yaml --set data.root=data/photos
    python benchmarks/ablation.py --out docs/results/vgg_ablation.json --runs runs/vgg_ablation \
        --variant "without VGG losses:" \
        --variant "with VGG16 losses:losses.vgg_network=vgg16 losses.vgg=10 losses.perceptual=0.001 losses.contextual=10"

Trains the config once per --variant ("NAME:KEY=VALUE KEY=VALUE ...", overrides on top of
--set) with `python -m cocosnet_tf.train`, each in its own process, one after the other,
for the config's train.steps. The default variants are (a) the official losses only
(losses.flow=0) and (b) the config's losses with the flow supervision (losses.flow as the
config has it). All runs take the same steps on the same data in the same order, so
their budgets differ only by what the variant changes; each one's wall clock is in the
table. From each run's heldout.json (train.py's held-out report) the table gives, per
correspondence level, the EPE and PCK@1/3 of the model, of the zero flow, of the
coarsest level upsampled and of the model with its ConvGRU flow heads zeroed; then the
finest warp's PSNR against the unwarped exemplar, and the output's PSNR, SSIM and colour
distance to the exemplar (against the target's). Then `python -m cocosnet_tf.evaluate`
measures each run's distribution against the targets on evaluate's own pairs: SWD, and
FID where the Inception weights are cached (`python -m cocosnet_tf.weights fetch
inception`). Markdown on stdout, everything as JSON in --out.
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


def command(module: str, args: list[str], what: str) -> float:
    """Run `python -m module args` in its own process; its wall clock in seconds."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"error: {what} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def train(config: str, overrides: list[str], run_dir: Path) -> float:
    args = ["--config", config, "--run-dir", str(run_dir)] + (["--set", *overrides] if overrides else [])
    return command("cocosnet_tf.train", args, f"training {run_dir}")


def distribution(run_dir: Path) -> dict:
    """SWD and FID of the run's outputs (and of the unwarped exemplars) against the targets."""
    command("cocosnet_tf.evaluate", ["--run", str(run_dir)], f"evaluating {run_dir}")
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    swd, fid = metrics["swd"], metrics["fid"]
    return {"pairs": swd["pairs"], "swd_output": swd["output_vs_target"]["mean"],
            "swd_exemplar": swd["exemplar_vs_target"]["mean"],
            "fid_output": fid.get("output_vs_target"), "fid_exemplar": fid.get("exemplar_vs_target"),
            "fid_reason": fid.get("reason")}


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
              "colour distance output / target | SWD output / exemplar | FID output / exemplar |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        h, d = result["heldout"], result["distribution"]
        gain = h.get("refinement_gain")
        lines.append(f"| {result['run']} | {result['seconds']:.0f} | {number(h['epe_ratio'])} | "
                     f"{'-' if gain is None else f'{-100 * gain:+.0f} %'} | {number(h['warp_psnr'])} | "
                     f"{number(h['exemplar_psnr'])} | {number(h['output_psnr'])} | {number(h['output_ssim'], 3)} | "
                     f"{number(h['colour_output_vs_exemplar'], 3)} / {number(h['colour_target_vs_exemplar'], 3)} | "
                     f"{number(d['swd_output'])} / {number(d['swd_exemplar'])} | "
                     f"{number(d['fid_output'], 1)} / {number(d['fid_exemplar'], 1)} |")
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    if not name.strip():
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME:KEY=VALUE ...")
    return name.strip(), overrides.split()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--variant", type=parse_variant, action="append", dest="variants", metavar="NAME:OVERRIDES",
                        help="a run: its name and overrides (repeatable; default: without and with losses.flow)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "flow_ablation"), help="folder of the runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "flow_ablation.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from cocosnet_tf.config import ConfigError, load_config

    variants = args.variants or [("(a) official losses", ["losses.flow=0"]), ("(b) official + flow", [])]
    try:
        for _, overrides in variants:
            load_config(args.config, args.overrides + overrides)
    except ConfigError as err:
        parser.error(str(err))
    results = []
    for index, (name, overrides) in enumerate(variants):
        run_dir = Path(args.runs) / f"run{index}"
        if run_dir.exists():
            parser.error(f"{run_dir} exists: remove it or pass another --runs")
        seconds = train(args.config, args.overrides + overrides, run_dir)
        heldout = json.loads((run_dir / "heldout.json").read_text())
        results.append({"run": name, "set": overrides, "seconds": seconds, "heldout": heldout,
                        "distribution": distribution(run_dir)})
        print(f"{name}: {seconds:.0f} s, finest EPE / zero flow {heldout['epe_ratio']:.2f}", flush=True)
    table = markdown(results)
    write_report(args.out, [{"config": args.config, "base_set": args.overrides, **r} for r in results], table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
