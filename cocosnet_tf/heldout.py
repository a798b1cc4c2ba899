"""Measuring a model on held-out pairs: the held-out split, the figures of every batch
(correspondence against the true flow, image quality against the target, colour
faithfulness to the exemplar) and their summaries.

`heldout_report` is the check a training run ends with (heldout.json, in words by
`heldout_lines`); `python -m cocosnet_tf.evaluate` adds SWD, FID, tables and an example
grid over more pairs of the same split.
"""

from __future__ import annotations

import time
from dataclasses import replace

import keras
import numpy as np
import tensorflow as tf

from cocosnet_tf import metrics
from cocosnet_tf.config import Config, DataConfig
from cocosnet_tf.data.kinds import build_source, dataset_kind
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.fileio import DataError
from cocosnet_tf.models.cocosnet.correspondence.network import level_factor
from cocosnet_tf.models.registry import model_kind
from cocosnet_tf.visualize import label_picture, to_uint8

PCK_THRESHOLDS = (1.0, 3.0, 5.0)  # in pixels of the level
FLOW_METHODS = ("model", "zero_flow", "coarsest_upsampled", "flow_heads_zeroed")
PROGRESS_SECONDS = 5.0
# heldout.json says which pairs its figures come from: evaluate's differ
HELDOUT_PAIRS = ("the held-out split (test phase, data.seed + 10007); synthetic data: its first 64 pairs at most, "
                 "every exemplar from the pair's own scene so that every pair has true flow. python -m "
                 "cocosnet_tf.evaluate reads the first evaluate.num_samples pairs with the data section's own "
                 "exemplar mix, so its figures differ")


# ----------------------------------------------------------------------------- data and network


def heldout_data(config: Config) -> DataConfig:
    """Held-out pairs: the same data source, test phase, another seed; synthetic scenes
    only with same-scene exemplars, so that every pair has its true flow."""
    synthetic = replace(config.data.synthetic, cross_scene_probability=0.0,
                        num_samples=min(config.data.synthetic.num_samples, 64))
    return replace(config.data, phase="test", seed=config.data.seed + 10007, shuffle=False, synthetic=synthetic)


def inference_function(model: keras.Model, config: Config, several_batches: bool):
    """The model kind's evaluation function (the image and what is measured beside it):
    eagerly for one batch, a tf.function traced for any batch size for several (tracing
    costs seconds)."""
    kind = model_kind(config)
    if not several_batches:
        return kind.evaluation(model)
    h, w = config.data.crop_size
    specs = [tf.TensorSpec([None, h, w, channels]) for channels in kind.input_channels(config).values()]
    return tf.function(kind.evaluation(model), input_signature=specs)


def region_ids(semantic: np.ndarray, data: DataConfig) -> np.ndarray:
    """[B, H, W] class ids of label maps (-1 where no class is set); edge and pose maps
    have no classes, so the whole image is one region (0)."""
    if not dataset_kind(data).has_classes:
        return np.zeros(semantic.shape[:3], np.int64)
    classes = semantic[..., :data.label_nc]
    return np.where(classes.max(axis=-1) > 0, classes.argmax(axis=-1), -1)


# ----------------------------------------------------------------------------- accumulating


def predicted_positions(out: dict) -> list[np.ndarray]:
    """Per level, the position (x, y) each pixel matches: the dense level's best match,
    then each PatchMatch level's softmax-weighted candidate (where its warp samples)."""
    return [out["dense_best"]] + [metrics.expected_positions(p, w) for p, w in zip(out["positions"], out["weights"])]


class Evaluation:
    """Everything measured so far, batch by batch; with `keep_inputs`, also the semantic
    inputs as pictures (what sesim_distance compares the outputs with)."""

    def __init__(self, config: Config, keep_inputs: bool = False):
        self.config, self.keep_inputs = config, keep_inputs
        # correspondence levels measured: none for a kind without warps
        self.levels = config.model.corr_levels if model_kind(config).measures_correspondence else 0
        self.pairs = self.flow_pairs = self.self_ref_pairs = 0
        self.flow = {m: [metrics.EndpointStats(PCK_THRESHOLDS) for _ in range(self.levels)] for m in FLOW_METHODS}
        self.quality: dict[str, dict[str, list]] = {}  # image kind -> metric -> per-image values
        self.images: dict[str, list] = {"output": [], "target": [], "exemplar": []}
        self.inputs: list[np.ndarray] = []  # the semantic inputs as pictures (uint8)
        # the finest warp's too: whether the output's colour error is the correspondence's
        # (the warp already carries it) or the generator's
        self.colour: dict[str, dict[int, list]] = {"output_vs_exemplar": {}, "target_vs_exemplar": {},
                                                   "warp_vs_exemplar": {}}
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
        if self.keep_inputs:
            self.inputs.append(label_picture(batch["label"]))
        if sum(len(b["label"]) for b, _ in self.grid_rows) < self.config.evaluate.grid_rows:
            self.grid_rows.append((batch, out))

    def add_correspondence(self, batch: dict, out: dict, unrefined: dict | None = None) -> None:
        self.flow_pairs += int(np.count_nonzero(batch["has_flow"]))
        if not self.levels:
            return
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
        for level, warp in enumerate(out.get("warps", [])):
            factor = level_factor(level)
            target = metrics.block_mean(batch["image"], factor)[self_ref]
            self._add_quality(f"warp{level}", warp[self_ref], target)
            self._add_quality(f"exemplar{level}", metrics.block_mean(batch["exemplar"], factor)[self_ref], target)

    def add_colours(self, batch: dict, out: dict) -> None:
        data, min_pixels = self.config.data, self.config.evaluate.histogram_min_pixels
        classes, exemplar_classes = region_ids(batch["label"], data), region_ids(batch["exemplar_label"], data)
        exemplar = to_uint8(batch["exemplar"])
        compared = [("output_vs_exemplar", out["image"]), ("target_vs_exemplar", batch["image"])]
        if self.levels:
            compared.append(("warp_vs_exemplar",
                             tf.image.resize(out["warps"][-1], batch["image"].shape[1:3], "nearest").numpy()))
        for name, images in compared:
            images = to_uint8(images)
            for i in range(images.shape[0]):
                found = metrics.class_colour_distances(images[i], classes[i], exemplar[i], exemplar_classes[i],
                                                       min_pixels)
                for cls, distance in found.items():
                    self.colour[name].setdefault(cls, []).append(distance)


def evaluate(model: keras.Model, config: Config, data: DataConfig, progress: bool = True,
             keep_inputs: bool = False) -> Evaluation:
    """Every metric over the pairs of `data`, batch by batch (`keep_inputs`: see Evaluation)."""
    source = build_source(data)
    total, batch_size = len(source), config.evaluate.batch_size
    if total == 0:
        raise DataError("the held-out split is empty: nothing to evaluate")
    infer = inference_function(model, config, several_batches=total > batch_size)
    kind = model_kind(config)
    ablation = (config.evaluate.refinement_ablation and kind.measures_correspondence
                and config.model.corr_levels > 1)
    ev = Evaluation(config, keep_inputs)
    start = shown = time.perf_counter()
    for batch in build_dataset(data, batch_size, repeat=False, source=source):
        batch = {k: v.numpy() for k, v in batch.items()}
        inputs = kind.batch_inputs(model, batch)
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


# ----------------------------------------------------------------------------- summaries


def endpoint_summary(stats: metrics.EndpointStats, factor: int) -> dict:
    """Mean error in level and image pixels and PCK; None where the level had no pixel
    (a coarse block counts only when its whole flow is known)."""
    if stats.count == 0:
        return {"epe": None, "epe_image_pixels": None, "pck": {f"{t:g}": None for t in stats.thresholds}}
    return {"epe": stats.mean(), "epe_image_pixels": stats.mean() * factor, "pck": stats.pck()}


def correspondence_report(ev: Evaluation) -> dict:
    if not ev.levels:
        return {"computed": False, "reason": f"a {ev.config.model.kind} model has no correspondence"}
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


def colour_summary(per_class: dict[int, list]) -> dict:
    everything = [d for values in per_class.values() for d in values]
    return {"mean": float(np.mean(everything)) if everything else None, "regions": len(everything),
            "per_class": {str(c): {"mean": float(np.mean(per_class[c])), "regions": len(per_class[c])}
                          for c in sorted(per_class)}}


def colour_report(ev: Evaluation) -> dict:
    regions = ("semantic classes of the label maps" if dataset_kind(ev.config.data).has_classes
               else "the whole image (edge and pose maps have no classes)")
    return {"regions": regions, **{name: colour_summary(v) for name, v in ev.colour.items()}}


# ----------------------------------------------------------------------------- heldout.json


def heldout_report(model: keras.Model, config: Config) -> dict:
    """The figures train.py writes to heldout.json at the end of a run, on the held-out
    pairs (heldout_data): the finest level's EPE against the zero flow and against the
    model with its flow heads zeroed, the finest warp's PSNR against the unwarped
    exemplar, the output's PSNR and SSIM, its per-class colour distance to the exemplar
    against the target's, and every level's correspondence figures."""
    ev = evaluate(model, config, heldout_data(config), progress=False)
    corr, quality, colour = correspondence_report(ev), quality_report(ev), colour_report(ev)
    result = {"pairs": ev.pairs, "output_psnr": quality["output"]["psnr"], "output_ssim": quality["output"]["ssim"],
              "colour_output_vs_exemplar": colour["output_vs_exemplar"]["mean"],
              "colour_target_vs_exemplar": colour["target_vs_exemplar"]["mean"],
              "colour_warp_vs_exemplar": colour["warp_vs_exemplar"]["mean"]}
    if result["colour_target_vs_exemplar"]:
        result["colour_ratio"] = result["colour_output_vs_exemplar"] / result["colour_target_vs_exemplar"]
        if result["colour_warp_vs_exemplar"] is not None:
            result["colour_ratio_warp"] = result["colour_warp_vs_exemplar"] / result["colour_target_vs_exemplar"]
    if not corr["computed"] or ev.levels < 2:
        return {**result, "note": corr["reason"] if not corr["computed"] else "a single correspondence level"}
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


def heldout_lines(report: dict) -> list[str]:
    """heldout.json's figures in words."""
    lines = [f"held-out check on {report['pairs']} pairs (heldout.json; evaluate measures more):"]
    if "epe_finest" in report:
        lines.append(f"  correspondence  the finest warp points {report['epe_finest']:.2f} px away from the true "
                     f"match on average, {report['epe_ratio']:.2f} x the {report['epe_zero_flow']:.2f} px of not "
                     "moving at all (lower is better; 1 = no better than no warp)")
        if "refinement_gain" in report:
            gain = report["refinement_gain"]
            lines.append(f"  refinement      the ConvGRU {'removes' if gain >= 0 else 'adds'} {abs(100 * gain):.0f} % "
                         f"of that error ({report['epe_flow_heads_zeroed']:.2f} px without its flow heads)")
        lines.append(f"  warp            {report['warp_psnr']:.1f} dB PSNR against the target, "
                     f"{report['psnr_gain']:+.1f} dB over the unwarped exemplar (higher is better)")
    else:
        lines.append(f"  correspondence  not measured: {report.get('note', 'no pairs with true flow')}")
    lines.append(f"  output          {report['output_psnr']:.1f} dB PSNR, SSIM {report['output_ssim']:.2f} "
                 "against the target (higher is better)")
    if "colour_ratio" in report:
        warp = f"; the finest warp's: {report['colour_ratio_warp']:.1f} x" if "colour_ratio_warp" in report else ""
        lines.append(f"  colour          {report['colour_ratio']:.1f} x the target's colour distance to the "
                     f"exemplar (1 = as faithful to the exemplar's colours as the target){warp}")
    return lines
