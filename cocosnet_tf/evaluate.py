"""`python -m cocosnet_tf.evaluate`: measure a trained run on held-out pairs.

    python -m cocosnet_tf.evaluate --run runs/demo [--config FILE] [--set k=v ...] [--out DIR]

Runs the run's newest checkpoint (or --checkpoint) over the first evaluate.num_samples
pairs of the held-out split and writes into --out (default RUN/evaluation):
metrics.json, metrics.md (the same as tables), examples.png (input, exemplar, warps,
output, target) and the resolved config.yaml.

Metrics:
  correspondence   where the true flow is known: end-point error of every level, in its
                   own pixels and in image pixels, and PCK at 1, 3 and 5 of its pixels;
                   beside it the zero flow, the coarsest level's flow upsampled and
                   (evaluate.refinement_ablation) the model with its ConvGRU flow heads
                   zeroed
  quality          PSNR, SSIM and L1 against the target: the output on every pair, the
                   warp of every level (and the unwarped exemplar) on pairs whose exemplar
                   shows the target's content, at that level's size
  distribution     SWD (sliced Wasserstein distance of Laplacian-pyramid patches) and FID
                   (Inception-v3 features, when its weights are on this machine) of the
                   outputs against the targets; the exemplars against the targets beside them
  faithfulness     per semantic class, the colour-histogram distance between the output
                   and the exemplar (the target and the exemplar beside it)
  structure        sesim_distance: the spatially-correlative distance (FSeSim, VGG16,
                   when its weights are on this machine) of the output to the semantic
                   input (the target's beside it)

Design decisions:

- The split is the one train.py reports on at its end (data.phase test: no random
  augmentation; data.seed + 10007, so synthetic scenes differ from training's; in index
  order), with the data section's own exemplar settings and evaluate.num_samples pairs.
- Deterministic: fixed data order, inference propagates in a fixed order, SWD draws from
  evaluate.seed; metrics.json holds no timing, so the same run and config give the same
  file byte for byte.
- Every image metric reads images rounded to uint8 as a PNG holds them (examples.png is
  a PNG); metrics.json states the conventions, FID's image format among them.
- --config replaces the run's config.yaml (its model must still fit the checkpoint).
- Nothing half-written: outputs are staged in a hidden folder inside --out and moved in
  together at the end. A missing run, a run without checkpoint, a checkpoint that does
  not fit, bad --set keys or a named Inception file that does not exist: one line
  `error: ...`, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import numpy as np

from cocosnet_tf import metrics
from cocosnet_tf.cli import add_run_arguments, add_set_argument, run
from cocosnet_tf.config import SWD_PATCH_SIZE, Config, ConfigError, DataConfig
from cocosnet_tf.fileio import Staging
from cocosnet_tf.visualize import translation_grid

if TYPE_CHECKING:
    from cocosnet_tf.heldout import Evaluation

# fid_inception, heldout and runs load TensorFlow: they are imported where they are used, so
# that --help and usage errors answer at once

OUTPUT_FILES = ("metrics.json", "metrics.md", "examples.png", "config.yaml")


def conventions() -> dict:
    """metrics.json's "conventions": how every figure is computed."""
    from cocosnet_tf.fid_inception import IMAGE_FORMAT

    return {
        "images": "every image metric reads images rounded to uint8 RGB, as a PNG holds them",
        "correspondence": (
            "flow: absolute exemplar positions (x, y), pixel centres at integers; level l's true flow is the "
            "full-size flow averaged over each block, in that level's pixels, where the whole block's flow is "
            "known and inside the exemplar. Predicted: level 0 the dense level's best match (argmax), finer "
            "levels the softmax-weighted mean of their K candidates (where the warp samples); the true flow is "
            "known where the target point is visible in the exemplar (flow_mask). epe: mean "
            "Euclidean error over pixels of all pairs in level pixels, epe_image_pixels: the same times the "
            "level's factor; pck: share of pixels with error <= 1, 3, 5 level pixels. zero_flow: every pixel "
            "matched to itself; coarsest_upsampled: level 0's displacements scaled and repeated over each "
            "block (nearest upsampling); flow_heads_zeroed: the model with its ConvGRU update blocks' flow heads "
            "zeroed (propagation and selection without learned corrections)"),
        "psnr": "dB, images mapped to [0, 1], MSE floored at 1e-12 (identical images: 120 dB); mean over images",
        "ssim": ("Wang et al. 2004 on [0, 1] images: 11 x 11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, per "
                 "channel, mean over valid windows (as tf.image.ssim); none for images under 11 pixels"),
        "l1": "mean absolute difference in [0, 1] intensity units",
        "quality_pairs": ("output: every pair; warps and the unwarped exemplar (pooled to the level like the "
                          "target): pairs whose exemplar shows the target's content (self_ref), as warp-self"),
        "swd": (f"sliced Wasserstein distance x {metrics.SWD_SCALE:g} (Karras et al. 2018) per Laplacian-pyramid "
                f"level (5-tap binomial, mirrored borders), finest first, down to evaluate.swd_min_resolution: "
                f"evaluate.swd_patches {SWD_PATCH_SIZE}x{SWD_PATCH_SIZE} patches per image and level at the same "
                "random positions in both sets, each channel normalised per level within each set, "
                "evaluate.swd_directions random unit projections; all draws from evaluate.seed"),
        "fid": ("Frechet distance of the standard FID Inception-v3's pool features (the 2015 TF graph, as "
                f"published FIDs use it); images: {IMAGE_FORMAT}; covariances with N - 1"),
        "sesim_distance": ("FSeSim structure distance to the semantic input (pictured as the previews picture "
                           "it): self-similarity maps of torchvision's VGG16 relu3_1 and relu4_1 at losses.sesim's "
                           "patches, window, variant, distance and keep, queries drawn from evaluate.seed; mean "
                           "over pairs; 0 for the same structure"),
        "colour": ("per pair and class present in both images with >= evaluate.histogram_min_pixels pixels: the "
                   "earth mover's distance of the 256-bin colour histograms, per channel (area between the "
                   "cumulative histograms), in [0, 1] intensity units, mean of R, G, B; mean over (pair, class)"),
    }


# ----------------------------------------------------------------------------- data


def evaluation_data(config: Config) -> DataConfig:
    """The held-out split (heldout_data), with the data section's own synthetic settings (its
    exemplar mix and size), limited to evaluate.num_samples pairs."""
    from cocosnet_tf.heldout import heldout_data

    n = config.evaluate.num_samples
    return replace(heldout_data(config), synthetic=config.data.synthetic,
                   max_samples=n if n else config.data.max_samples)


# ----------------------------------------------------------------------------- the report


def swd_report(images: dict[str, np.ndarray], config: Config) -> dict:
    e = config.evaluate
    report = {"pairs": int(images["target"].shape[0])}
    for name in ("output", "exemplar"):
        levels = metrics.swd(images[name], images["target"], e.seed, e.swd_patches, e.swd_directions,
                             e.swd_min_resolution, SWD_PATCH_SIZE)
        report[f"{name}_vs_target"] = {"levels": levels, "mean": float(np.mean(levels))}
    h, w = config.data.crop_size
    count = metrics.pyramid_levels(h, w, e.swd_min_resolution)
    report["level_sizes"] = [[h >> i, w >> i] for i in range(count)]
    return report


def fid_report(images: dict[str, np.ndarray], weights, reason: str) -> dict:
    if weights is None:
        return {"computed": False, "reason": reason}
    if images["target"].shape[0] < 2:
        return {"computed": False, "reason": "FID needs at least 2 pairs (a covariance)"}
    from cocosnet_tf import fid_inception

    network = fid_inception.build(weights)
    stats = {k: metrics.gaussian_statistics(fid_inception.pool_features(network, v)) for k, v in images.items()}
    report = {"computed": True, "pairs": int(images["target"].shape[0]), "weights": str(weights),
              "image_format": fid_inception.IMAGE_FORMAT}
    for name in ("output", "exemplar"):
        report[f"{name}_vs_target"] = metrics.frechet_distance(*stats[name], *stats["target"])
    return report


def structure_weights():
    """The VGG16 weights sesim_distance measures with, when they are on this machine."""
    from cocosnet_tf import weights as cached_weights

    return cached_weights.cached("vgg16")


def sesim_report(ev: Evaluation, config: Config) -> dict:
    """The FSeSim distance of the outputs and of the targets to the inputs (kept by an
    Evaluation with keep_inputs), with the fixed VGG16 whatever losses.sesim.learned says
    (learned heads would measure with the run's own yardstick)."""
    import tensorflow as tf

    from cocosnet_tf.losses import sesim
    from cocosnet_tf.losses.vgg import features

    path = structure_weights()
    if path is None:
        return {"computed": False, "reason": "no VGG16 weights (python -m cocosnet_tf.weights fetch vgg16)"}
    trunk = sesim.build_trunk(path)
    measure = sesim.SpatialCorrelative(**{**asdict(config.losses.sesim), "learned": False}, seed=config.evaluate.seed)
    inputs = np.concatenate(ev.inputs)
    report = {"computed": True, "pairs": int(inputs.shape[0]), "weights": str(path)}
    for name in ("output", "target"):
        images, found = np.concatenate(ev.images[name]), []
        for start in range(0, len(inputs), config.evaluate.batch_size):
            end = start + config.evaluate.batch_size
            pair = [features(trunk, tf.constant(x[start:end].astype(np.float32) / 127.5 - 1.0)) for x in (inputs, images)]
            found.append(measure.structure_distance(*pair, step=0).numpy())
        report[f"input_vs_{name}"] = float(np.mean(np.concatenate(found)))
    return report


def report(ev: Evaluation, run_dir: str, checkpoint: str, data: DataConfig, weights, fid_reason: str,
           inputs: dict[str, str] | None = None) -> dict:
    from cocosnet_tf.heldout import colour_report, correspondence_report, quality_report

    images = {k: np.concatenate(v) for k, v in ev.images.items()}
    return {
        "run": run_dir, "checkpoint": checkpoint,
        **({"inputs": inputs} if inputs else {}),
        "split": {"dataset": data.dataset, "phase": data.phase, "seed": data.seed, "size": list(data.crop_size),
                  "pairs": ev.pairs, "pairs_with_flow": ev.flow_pairs, "self_ref_pairs": ev.self_ref_pairs},
        "conventions": conventions(),
        "correspondence": correspondence_report(ev),
        "quality": quality_report(ev),
        "swd": swd_report(images, ev.config),
        "fid": fid_report(images, weights, fid_reason),
        "colour": colour_report(ev),
        "sesim_distance": sesim_report(ev, ev.config),
    }


# ----------------------------------------------------------------------------- markdown


def number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def correspondence_markdown(section: dict) -> list[str]:
    from cocosnet_tf.heldout import FLOW_METHODS, PCK_THRESHOLDS

    if not section["computed"]:
        return [f"Not computed: {section['reason']}."]
    lines = [f"{section['pairs']} pairs with known flow. EPE in pixels of the level and of the image; "
             "PCK: share of pixels within 1, 3, 5 level pixels.", "",
             "| level | size | flow | EPE (level px) | EPE (image px) | PCK@1 | PCK@3 | PCK@5 |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in section["levels"]:
        for method in (m for m in FLOW_METHODS if m in entry):
            m = entry[method]
            lines.append(f"| {entry['level']} (1/{entry['factor']}) | {entry['size'][1]}x{entry['size'][0]} | "
                         f"{method.replace('_', ' ')} | {number(m['epe'])} | {number(m['epe_image_pixels'])} | "
                         + " | ".join(number(m["pck"][f"{t:g}"]) for t in PCK_THRESHOLDS) + " |")
    return lines


def quality_markdown(section: dict) -> list[str]:
    lines = ["| image | pairs | PSNR (dB) | SSIM | L1 |", "|---|---|---|---|---|"]

    def row(name: str, q: dict) -> str:
        return f"| {name} | {q['pairs']} | {number(q['psnr'], 2)} | {number(q['ssim'])} | {number(q['l1'])} |"

    for entry in section["warps"]:
        lines.append(row(f"warp, level {entry['level']} (1/{entry['factor']})", entry["warp"]))
        lines.append(row(f"exemplar, unwarped (1/{entry['factor']})", entry["exemplar"]))
    lines.append(row("output", section["output"]))
    if "warps_note" in section:
        lines += ["", f"Warps: {section['warps_note']}."]
    return lines


def distribution_markdown(swd: dict, fid: dict) -> list[str]:
    sizes = ", ".join(f"{w}x{h}" for h, w in swd["level_sizes"])
    lines = [f"SWD x 1e3 per pyramid level ({sizes}) and their mean; {swd['pairs']} pairs.", "",
             "| images | SWD per level | SWD mean | FID |", "|---|---|---|---|"]
    for name in ("output", "exemplar"):
        entry = swd[f"{name}_vs_target"]
        fid_value = number(fid[f"{name}_vs_target"], 2) if fid["computed"] else "-"
        lines.append(f"| {name} vs target | {', '.join(number(x, 2) for x in entry['levels'])} | "
                     f"{number(entry['mean'], 2)} | {fid_value} |")
    if fid["computed"]:
        lines += ["", f"FID images: {fid['image_format']}; weights {fid['weights']}."]
    else:
        lines += ["", f"FID not computed: {fid['reason']}."]
    return lines


def colour_markdown(section: dict) -> list[str]:
    lines = [f"Colour-histogram distance (earth mover's, [0, 1] intensity units) per region: {section['regions']}.",
             "", "| images | mean distance | regions |", "|---|---|---|"]
    for name in ("output_vs_exemplar", "target_vs_exemplar", "warp_vs_exemplar"):
        lines.append(f"| {name.replace('_', ' ')} | {number(section[name]['mean'])} | {section[name]['regions']} |")
    return lines


def sesim_markdown(section: dict) -> list[str]:
    if not section["computed"]:
        return [f"Spatially-correlative distance not computed: {section['reason']}."]
    return [f"Spatially-correlative (FSeSim) distance to the semantic input: output "
            f"{number(section['input_vs_output'])}, target {number(section['input_vs_target'])} "
            f"({section['pairs']} pairs)."]


def markdown(result: dict) -> str:
    split = result["split"]
    h, w = split["size"]
    lines = [f"# Evaluation of {result['run']}", "",
             f"Checkpoint `{result['checkpoint']}`; {split['pairs']} pairs of the held-out split "
             f"({split['dataset']}, {split['phase']} phase, seed {split['seed']}, {w}x{h}). "
             "Image metrics read uint8 images (as PNG); conventions in metrics.json."
             + "".join(f" Input {name}: {note}." for name, note in result.get("inputs", {}).items()), "",
             "## Correspondence", ""] + correspondence_markdown(result["correspondence"])
    lines += ["", "## Quality against the target", ""] + quality_markdown(result["quality"])
    lines += ["", "## Distribution", ""] + distribution_markdown(result["swd"], result["fid"])
    lines += ["", "## Exemplar faithfulness", ""] + colour_markdown(result["colour"])
    lines += ["", "## Structure", ""] + sesim_markdown(result["sesim_distance"])
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- running


def examples_grid(ev: Evaluation) -> np.ndarray:
    rows = ev.config.evaluate.grid_rows
    batch = {k: np.concatenate([b[k] for b, _ in ev.grid_rows])[:rows] for k in ("label", "exemplar", "image")}
    output = np.concatenate([o["image"] for _, o in ev.grid_rows])[:rows]
    warps = [np.concatenate([o["warps"][level] for _, o in ev.grid_rows])[:rows] for level in range(ev.levels)]
    return translation_grid(batch, output, warps)


def summary_line(result: dict) -> str:
    parts = [f"output PSNR {result['quality']['output']['psnr']:.2f} dB",
             f"SWD {result['swd']['output_vs_target']['mean']:.2f}"]
    corr = result["correspondence"]
    if corr["computed"]:
        finest = corr["levels"][-1]
        parts.insert(0, f"finest EPE {finest['model']['epe']:.3f} px (zero flow {finest['zero_flow']['epe']:.3f})")
    parts.append(f"FID {result['fid']['output_vs_target']:.2f}" if result["fid"]["computed"] else "FID not computed")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.evaluate",
                                     description=__doc__.split("\nDesign decisions:")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--config", default=None, metavar="FILE", help="configuration instead of DIR/config.yaml")
    add_set_argument(parser)
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default DIR/evaluation)")
    args = parser.parse_args(argv)

    def body() -> None:
        from cocosnet_tf import fid_inception
        from cocosnet_tf.heldout import evaluate
        from cocosnet_tf.models.registry import model_kind
        from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config

        config = load_run_config(args.run, args.overrides, args.config)
        checkpoint = find_checkpoint(args.run, args.checkpoint)
        out_dir = args.out or os.path.join(args.run, "evaluation")
        if os.path.isdir(out_dir) and os.path.samefile(out_dir, args.run):
            raise ConfigError(f"--out {out_dir} is the run directory; its config.yaml would be replaced")
        weights, fid_reason = fid_inception.find_weights(config.evaluate.inception_weights)
        model = load_model(config, checkpoint)
        inputs = model_kind(config).run_files(model, args.run)
        data = evaluation_data(config)
        ev = evaluate(model, config, data, keep_inputs=structure_weights() is not None)
        result = report(ev, args.run, checkpoint, data, weights, fid_reason, inputs)
        with Staging(out_dir, prefix=".evaluate-") as staging:
            staging.add_text(os.path.join(out_dir, "metrics.json"), json.dumps(result, indent=2) + "\n")
            staging.add_text(os.path.join(out_dir, "metrics.md"), markdown(result))
            staging.add(os.path.join(out_dir, "examples.png"), examples_grid(ev))
            staging.add_text(os.path.join(out_dir, "config.yaml"), config.to_yaml())
            staging.commit()
        print(summary_line(result))
        print(f"wrote {', '.join(OUTPUT_FILES)} to {out_dir} ({ev.pairs} pairs, checkpoint {checkpoint})")

    run(body)


if __name__ == "__main__":
    main()
