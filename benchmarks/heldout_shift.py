"""Does a trained run's held-out report hold on data it has never seen?

    python benchmarks/heldout_shift.py --run runs/demo --out docs/results/heldout_shift.json
    python benchmarks/heldout_shift.py --run runs/demo --variant "stronger:data.synthetic.warp_strength=1.5"

Loads the run's newest checkpoint once and computes train.py's held-out report
(heldout.json's figures: finest EPE against the zero flow and against the ConvGRU's flow
heads zeroed, warp PSNR against the unwarped exemplar, output PSNR and SSIM, colour
distance to the exemplar against the target's) on the run's own held-out split and on
each --variant ("NAME:KEY=VALUE ...", overrides of the run's config; data.seed changes
the scenes, data.synthetic.warp_strength the motion). The default variants are two other
data seeds and motion a quarter stronger. Markdown on stdout, everything as JSON in --out.
"""

from __future__ import annotations

import argparse

from harness import write_report

DEFAULT_VARIANTS = ("other scenes (data.seed 101):data.seed=101",
                    "other scenes (data.seed 202):data.seed=202",
                    "motion x1.25:data.synthetic.warp_strength=1.25")
COLUMNS = (("finest EPE / zero flow", "epe_ratio", "{:.2f}"), ("zero-flow EPE (px)", "epe_zero_flow", "{:.2f}"),
           ("ConvGRU gain", "refinement_gain", "{:.0%}"), ("warp PSNR gain (dB)", "psnr_gain", "{:+.1f}"),
           ("output PSNR (dB)", "output_psnr", "{:.2f}"), ("colour ratio", "colour_ratio", "{:.1f}x"),
           ("its finest warp's colour ratio", "colour_ratio_warp", "{:.1f}x"))


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    if not name.strip():
        raise SystemExit(f"error: --variant {text!r} has no name before ':'")
    return name.strip(), overrides.split()


def table(rows: list[dict]) -> str:
    lines = ["| pairs | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = [fmt.format(row["report"][key]) if key in row["report"] else "-" for _, key, fmt in COLUMNS]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a training run folder")
    parser.add_argument("--variant", action="append", help="NAME:KEY=VALUE ... (repeatable)")
    parser.add_argument("--out", help="JSON report")
    args = parser.parse_args()
    variants = [("the run's held-out split", [])] + [parse_variant(v) for v in args.variant or DEFAULT_VARIANTS]

    from cocosnet_tf.heldout import heldout_report
    from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config

    checkpoint = find_checkpoint(args.run, None)
    model = load_model(load_run_config(args.run, []), checkpoint)
    rows = []
    for name, overrides in variants:
        report = heldout_report(model, load_run_config(args.run, overrides))
        rows.append({"name": name, "set": overrides, "report": report})
        print(f"{name}: finest EPE / zero flow {report.get('epe_ratio', float('nan')):.2f}", flush=True)
    for row in rows:
        row["run"], row["checkpoint"] = args.run, checkpoint
    if args.out:
        write_report(args.out, rows, table(rows))
    else:
        print("\n" + table(rows))


if __name__ == "__main__":
    main()
