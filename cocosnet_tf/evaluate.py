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
import time
from dataclasses import replace

import numpy as np
import tensorflow as tf

from cocosnet_tf import fid_inception, metrics
from cocosnet_tf.cli import add_run_arguments, add_set_argument, run
from cocosnet_tf.config import SWD_PATCH_SIZE, Config, ConfigError, DataConfig
from cocosnet_tf.correspondence.network import level_factor
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.data.sources import build_source
from cocosnet_tf.fileio import DataError, Staging
from cocosnet_tf.model import CoCosNet
from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config
from cocosnet_tf.visualize import to_uint8, translation_grid

PCK_THRESHOLDS = (1.0, 3.0, 5.0)  # in pixels of the level
FLOW_METHODS = ("model", "zero_flow", "coarsest_upsampled", "flow_heads_zeroed")
PROGRESS_SECONDS = 5.0
OUTPUT_FILES = ("metrics.json", "metrics.md", "examples.png", "config.yaml")

CONVENTIONS = {
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
            f"published FIDs use it); images: {fid_inception.IMAGE_FORMAT}; covariances with N - 1"),
    "colour": ("per pair and class present in both images with >= evaluate.histogram_min_pixels pixels: the "
               "earth mover's distance of the 256-bin colour histograms, per channel (area between the "
               "cumulative histograms), in [0, 1] intensity units, mean of R, G, B; mean over (pair, class)"),
}


# ----------------------------------------------------------------------------- data and network


def heldout_data(config: Config) -> DataConfig:
    """Held-out pairs: the same data source, test phase, another seed; synthetic scenes
    only with same-scene exemplars, so that every pair has its true flow."""
    synthetic = replace(config.data.synthetic, cross_scene_probability=0.0,
                        num_samples=min(config.data.synthetic.num_samples, 64))
    return replace(config.data, phase="test", seed=config.data.seed + 10007, shuffle=False, synthetic=synthetic)


def evaluation_data(config: Config) -> DataConfig:
    """train.py's held-out split, with the data section's own synthetic settings (its
    exemplar mix and size), limited to evaluate.num_samples pairs."""
    n = config.evaluate.num_samples
    return replace(heldout_data(config), synthetic=config.data.synthetic,
                   max_samples=n if n else config.data.max_samples)


def inference_function(model: CoCosNet, config: Config, several_batches: bool):
    """Image, warps and the correspondence's positions for one batch (CoCosNet.call keeps
    only image and warps): eagerly for one batch, a tf.function traced for any batch
    size for several (tracing costs seconds)."""

    def infer(label, exemplar, exemplar_label):
        out = model.correspondence(label, exemplar, exemplar_label)
        image = tf.cast(model.generator(label, out["warps"]), tf.float32)
        return {"image": image, **{k: out[k] for k in ("warps", "positions", "weights", "dense_best")}}

    if not several_batches:
        return infer
    h, w = config.data.crop_size
    label, photo = tf.TensorSpec([None, h, w, config.data.semantic_nc]), tf.TensorSpec([None, h, w, 3])
    return tf.function(infer, input_signature=[label, photo, label])


def region_ids(semantic: np.ndarray, data: DataConfig) -> np.ndarray:
    """[B, H, W] class ids of label maps (-1 where no class is set); edge and pose maps
    have no classes, so the whole image is one region (0)."""
    if data.dataset in ("edges", "deepfashion"):
        return np.zeros(semantic.shape[:3], np.int64)
    classes = semantic[..., :data.label_nc]
    return np.where(classes.max(axis=-1) > 0, classes.argmax(axis=-1), -1)


# ----------------------------------------------------------------------------- accumulating


def predicted_positions(out: dict) -> list[np.ndarray]:
    """Per level, the position (x, y) each pixel matches: the dense level's best match,
    then each PatchMatch level's softmax-weighted candidate (where its warp samples)."""
    return [out["dense_best"]] + [metrics.expected_positions(p, w) for p, w in zip(out["positions"], out["weights"])]



class Evaluation:
    """Everything measured so far, batch by batch."""

    def __init__(self, config: Config):
        self.config = config
        self.levels = config.model.corr_levels
        self.pairs = self.flow_pairs = self.self_ref_pairs = 0
        self.flow = {m: [metrics.EndpointStats(PCK_THRESHOLDS) for _ in range(self.levels)] for m in FLOW_METHODS}
        self.quality: dict[str, dict[str, list]] = {}  # image kind -> metric -> per-image values
        self.images: dict[str, list] = {"output": [], "target": [], "exemplar": []}
        self.colour: dict[str, dict[int, list]] = {"output_vs_exemplar": {}, "target_vs_exemplar": {}}
        self.grid_rows: list[tuple[dict, dict]] = []

    def flow_methods(self) -> tuple[str, ...]:
        """The flows measured: the ablation's only when it ran."""
        return tuple(m for m in FLOW_METHODS if m != "flow_heads_zeroed" or self.flow[m][-1].count)

    def add(self, batch: dict, out: dict, unrefined: dict | None = None) -> None:
        """One batch, its inference output and, for the ablation, the output with the flow
        heads zeroed."""
        self.pairs += batch["label"].shape[0]
        self.add_correspondence(batch, out, unrefined)
        self.add_quality(batch, out)
        self.add_colours(batch, out)
        for key, image in (("output", out["image"]), ("target", batch["image"]), ("exemplar", batch["exemplar"])):
            self.images[key].append(to_uint8(image))
        if sum(len(b["label"]) for b, _ in self.grid_rows) < self.config.evaluate.grid_rows:
            self.grid_rows.append((batch, out))

    def add_correspondence(self, batch: dict, out: dict, unrefined: dict | None = None) -> None:
        self.flow_pairs += int(np.count_nonzero(batch["has_flow"]))
        valid = metrics.valid_flow_mask(batch)
        predicted = predicted_positions(out)
        for level in range(self.levels):
            factor = level_factor(level)
            true, mask = metrics.flow_at_level(batch["flow"], valid, factor)
            if not mask.any():
                continue
            b, h, w = mask.shape
            candidates = {"model": predicted[level], "zero_flow": metrics.identity_positions(b, h, w),
                          "coarsest_upsampled": metrics.upsampled_positions(predicted[0], level_factor(0) // factor)}
            if unrefined is not None:
                candidates["flow_heads_zeroed"] = predicted_positions(unrefined)[level]
            for method, positions in candidates.items():
                self.flow[method][level].add(metrics.endpoint_errors(positions, true, mask))

    def _add_quality(self, kind: str, image: np.ndarray, target: np.ndarray) -> None:
        values = self.quality.setdefault(kind, {"psnr": [], "ssim": [], "l1": []})
        image, target = metrics.quantise(image), metrics.quantise(target)
        values["psnr"].append(metrics.psnr(image, target))
        values["l1"].append(metrics.l1(image, target))
        if min(image.shape[1:3]) >= metrics.SSIM_WINDOW:
            values["ssim"].append(metrics.ssim(image, target))

    def add_quality(self, batch: dict, out: dict) -> None:
        self._add_quality("output", out["image"], batch["image"])
        self_ref = batch["self_ref"] > 0
        self.self_ref_pairs += int(np.count_nonzero(self_ref))
        if not self_ref.any():
            return
        for level, warp in enumerate(out["warps"]):
            factor = level_factor(level)
            target = metrics.block_mean(batch["image"], factor)[self_ref]
            self._add_quality(f"warp{level}", warp[self_ref], target)
            self._add_quality(f"exemplar{level}", metrics.block_mean(batch["exemplar"], factor)[self_ref], target)

    def add_colours(self, batch: dict, out: dict) -> None:
        data, min_pixels = self.config.data, self.config.evaluate.histogram_min_pixels
        classes, exemplar_classes = region_ids(batch["label"], data), region_ids(batch["exemplar_label"], data)
        exemplar = to_uint8(batch["exemplar"])
        for name, images in (("output_vs_exemplar", out["image"]), ("target_vs_exemplar", batch["image"])):
            images = to_uint8(images)
            for i in range(images.shape[0]):
                found = metrics.class_colour_distances(images[i], classes[i], exemplar[i], exemplar_classes[i],
                                                       min_pixels)
                for cls, distance in found.items():
                    self.colour[name].setdefault(cls, []).append(distance)


# ----------------------------------------------------------------------------- the report


def endpoint_summary(stats: metrics.EndpointStats, factor: int) -> dict:
    """Mean error in level and image pixels and PCK; None where the level had no pixel
    (a coarse block counts only when its whole flow is known)."""
    if stats.count == 0:
        return {"epe": None, "epe_image_pixels": None, "pck": {f"{t:g}": None for t in stats.thresholds}}
    return {"epe": stats.mean(), "epe_image_pixels": stats.mean() * factor, "pck": stats.pck()}


def correspondence_report(ev: Evaluation) -> dict:
    if all(stats.count == 0 for stats in ev.flow["model"]):
        return {"computed": False, "reason": "no evaluated pair has a known flow (synthetic scenes with "
                                             "same-scene exemplars and pseudo-pairs have one)"}
    h, w = ev.config.data.crop_size
    levels = []
    for level in range(ev.levels):
        factor = level_factor(level)
        entry = {"level": level, "factor": factor, "size": [h // factor, w // factor],
                 "pixels": ev.flow["model"][level].count}
        entry.update({method: endpoint_summary(ev.flow[method][level], factor) for method in ev.flow_methods()})
        levels.append(entry)
    return {"computed": True, "pairs": ev.flow_pairs, "levels": levels}


def quality_summary(values: dict[str, list]) -> dict:
    joined = {k: np.concatenate(v) for k, v in values.items() if v}
    summary = {"pairs": int(joined["psnr"].size)}
    summary.update({k: float(np.mean(joined[k])) if k in joined else None for k in ("psnr", "ssim", "l1")})
    return summary


def quality_report(ev: Evaluation) -> dict:
    report = {"output": quality_summary(ev.quality["output"]), "warps": []}
    if not ev.self_ref_pairs:
        report["warps_note"] = "no evaluated pair has an exemplar showing the target's content (self_ref)"
        return report
    for level in range(ev.levels):
        report["warps"].append({"level": level, "factor": level_factor(level),
                                "warp": quality_summary(ev.quality[f"warp{level}"]),
                                "exemplar": quality_summary(ev.quality[f"exemplar{level}"])})
    return report


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
    network = fid_inception.build(weights)
    stats = {k: metrics.gaussian_statistics(fid_inception.pool_features(network, v)) for k, v in images.items()}
    report = {"computed": True, "pairs": int(images["target"].shape[0]), "weights": str(weights),
              "image_format": fid_inception.IMAGE_FORMAT}
    for name in ("output", "exemplar"):
        report[f"{name}_vs_target"] = metrics.frechet_distance(*stats[name], *stats["target"])
    return report


def colour_summary(per_class: dict[int, list]) -> dict:
    everything = [d for values in per_class.values() for d in values]
    return {"mean": float(np.mean(everything)) if everything else None, "regions": len(everything),
            "per_class": {str(c): {"mean": float(np.mean(per_class[c])), "regions": len(per_class[c])}
                          for c in sorted(per_class)}}


def colour_report(ev: Evaluation) -> dict:
    regions = ("the whole image (edge and pose maps have no classes)"
               if ev.config.data.dataset in ("edges", "deepfashion") else "semantic classes of the label maps")
    return {"regions": regions, **{name: colour_summary(v) for name, v in ev.colour.items()}}


def report(ev: Evaluation, run_dir: str, checkpoint: str, data: DataConfig, weights, fid_reason: str) -> dict:
    images = {k: np.concatenate(v) for k, v in ev.images.items()}
    return {
        "run": run_dir, "checkpoint": checkpoint,
        "split": {"dataset": data.dataset, "phase": data.phase, "seed": data.seed, "size": list(data.crop_size),
                  "pairs": ev.pairs, "pairs_with_flow": ev.flow_pairs, "self_ref_pairs": ev.self_ref_pairs},
        "conventions": CONVENTIONS,
        "correspondence": correspondence_report(ev),
        "quality": quality_report(ev),
        "swd": swd_report(images, ev.config),
        "fid": fid_report(images, weights, fid_reason),
        "colour": colour_report(ev),
    }


# ----------------------------------------------------------------------------- markdown


def number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def correspondence_markdown(section: dict) -> list[str]:
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
    for name in ("output_vs_exemplar", "target_vs_exemplar"):
        lines.append(f"| {name.replace('_', ' ')} | {number(section[name]['mean'])} | {section[name]['regions']} |")
    return lines


def markdown(result: dict) -> str:
    split = result["split"]
    h, w = split["size"]
    lines = [f"# Evaluation of {result['run']}", "",
             f"Checkpoint `{result['checkpoint']}`; {split['pairs']} pairs of the held-out split "
             f"({split['dataset']}, {split['phase']} phase, seed {split['seed']}, {w}x{h}). "
             "Image metrics read uint8 images (as PNG); conventions in metrics.json.", "",
             "## Correspondence", ""] + correspondence_markdown(result["correspondence"])
    lines += ["", "## Quality against the target", ""] + quality_markdown(result["quality"])
    lines += ["", "## Distribution", ""] + distribution_markdown(result["swd"], result["fid"])
    lines += ["", "## Exemplar faithfulness", ""] + colour_markdown(result["colour"])
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- running


def evaluate(model: CoCosNet, config: Config, data: DataConfig, progress: bool = True) -> Evaluation:
    """Every metric over the pairs of `data`, batch by batch."""
    source = build_source(data)
    total, batch_size = len(source), config.evaluate.batch_size
    if total == 0:
        raise DataError("the held-out split is empty: nothing to evaluate")
    infer = inference_function(model, config, several_batches=total > batch_size)
    ablation = config.evaluate.refinement_ablation and config.model.corr_levels > 1
    ev = Evaluation(config)
    start = shown = time.perf_counter()
    for batch in build_dataset(data, batch_size, repeat=False, source=source):
        batch = {k: v.numpy() for k, v in batch.items()}
        inputs = (batch["label"], batch["exemplar"], batch["exemplar_label"])
        out = tf.nest.map_structure(lambda t: t.numpy(), infer(*inputs))
        if not np.isfinite(out["image"]).all():
            raise DataError("the network's output is not finite (NaN or inf); the checkpoint may have diverged "
                            "(nothing was written)")
        unrefined = None
        if ablation and batch["has_flow"].any():
            with model.correspondence.flow_heads_zeroed():
                unrefined = tf.nest.map_structure(lambda t: t.numpy(), infer(*inputs))
        ev.add(batch, out, unrefined)
        if progress and (time.perf_counter() - shown >= PROGRESS_SECONDS or ev.pairs == total):
            shown = time.perf_counter()
            print(f"{ev.pairs}/{total} pairs  {ev.pairs / max(shown - start, 1e-9):.2f} pairs/s", flush=True)
    return ev


def examples_grid(ev: Evaluation) -> np.ndarray:
    rows = ev.config.evaluate.grid_rows
    batch = {k: np.concatenate([b[k] for b, _ in ev.grid_rows])[:rows] for k in ("label", "exemplar", "image")}
    output = np.concatenate([o["image"] for _, o in ev.grid_rows])[:rows]
    warps = [np.concatenate([o["warps"][level] for _, o in ev.grid_rows])[:rows] for level in range(ev.levels)]
    return translation_grid(batch, output, warps)


def heldout_report(model: CoCosNet, config: Config) -> dict:
    """The figures train.py writes to heldout.json at the end of a run, on the held-out
    pairs (heldout_data): the finest level's EPE against the zero flow and against the
    model with its flow heads zeroed, the finest warp's PSNR against the unwarped
    exemplar, the output's PSNR and SSIM, its per-class colour distance to the exemplar
    against the target's, and every level's correspondence figures."""
    ev = evaluate(model, config, heldout_data(config), progress=False)
    corr, quality, colour = correspondence_report(ev), quality_report(ev), colour_report(ev)
    result = {"pairs": ev.pairs, "output_psnr": quality["output"]["psnr"], "output_ssim": quality["output"]["ssim"],
              "colour_output_vs_exemplar": colour["output_vs_exemplar"]["mean"],
              "colour_target_vs_exemplar": colour["target_vs_exemplar"]["mean"]}
    if result["colour_target_vs_exemplar"]:
        result["colour_ratio"] = result["colour_output_vs_exemplar"] / result["colour_target_vs_exemplar"]
    if not corr["computed"] or ev.levels < 2:
        return {**result, "note": "no held-out pairs with known flow (or a single correspondence level)"}
    finest, warp = corr["levels"][-1], quality["warps"][-1]
    result.update({"level_factor": finest["factor"], "pixels": finest["pixels"], "epe_finest": finest["model"]["epe"],
                   "epe_zero_flow": finest["zero_flow"]["epe"],
                   "epe_coarsest_upsampled": finest["coarsest_upsampled"]["epe"]})
    result["epe_ratio"] = result["epe_finest"] / result["epe_zero_flow"]
    if "flow_heads_zeroed" in finest:
        result["epe_flow_heads_zeroed"] = finest["flow_heads_zeroed"]["epe"]
        result["refinement_gain"] = 1.0 - result["epe_finest"] / result["epe_flow_heads_zeroed"]
    result.update({"warp_psnr": warp["warp"]["psnr"], "exemplar_psnr": warp["exemplar"]["psnr"],
                   "psnr_gain": warp["warp"]["psnr"] - warp["exemplar"]["psnr"], "levels": corr["levels"]})
    return result


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
        config = load_run_config(args.run, args.overrides, args.config)
        checkpoint = find_checkpoint(args.run, args.checkpoint)
        out_dir = args.out or os.path.join(args.run, "evaluation")
        if os.path.isdir(out_dir) and os.path.samefile(out_dir, args.run):
            raise ConfigError(f"--out {out_dir} is the run directory; its config.yaml would be replaced")
        weights, fid_reason = fid_inception.find_weights(config.evaluate.inception_weights)
        model = load_model(config, checkpoint)
        data = evaluation_data(config)
        ev = evaluate(model, config, data)
        result = report(ev, args.run, checkpoint, data, weights, fid_reason)
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
