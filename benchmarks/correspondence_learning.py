"""How far the correspondence network learns on its own, on the synthetic scenes.

    python benchmarks/correspondence_learning.py                      # demo config, 1000 steps
    python benchmarks/correspondence_learning.py --steps 600 --every 200 \\
        --set data.synthetic.warp_strength=2.0 data.synthetic.min_objects=8 data.synthetic.max_objects=14
    python benchmarks/correspondence_learning.py --run runs/demo         # diagnose a trained run
    python benchmarks/correspondence_learning.py --ceiling               # hand-made label features

Trains only the correspondence network, on its own losses (warp-self, warp-cycle,
alignment; the generator side's Adam, spectral power iterations as in training), and
every --every steps reports the held-out finest-level end-point error against the zero
flow (heldout.heldout_report's pairs), split into pixels inside objects and background
pixels (class 0). A diagnostic for the demo's EPE target (docs/correspondence.md): it
separates what the correspondence learns from the generator and the discriminator, and
shows where its error is. With --frozen-refinement the update blocks' flow heads are
zeroed and left untrained, so that only the features and the search can learn. One
process, no XLA; the table is printed as markdown and written to --out as JSON.

With --run it trains nothing and diagnoses that run's correspondence on the same pairs:
the finest level's EPE of the expected position (what the warp samples), of the
top-weighted candidate and of the best of the K candidates (whether the search found
the match), the mean largest softmax weight against 1/K (whether the scores tell the
candidates apart), and the EPE when the target photo's exemplar-branch features stand
in for the label's (whether the features localise at all, without the domain gap), and
last the EPE with the flow heads zeroed (what features and search find without the
ConvGRU's corrections).

With --ceiling it trains nothing and asks how far matching label maps can go on this
data, with hand-made features in place of learned ones: each level's one-hot label map,
block-averaged to the level and blurred by Gaussians of --sigmas level pixels, centred
and normalised (the exemplar's label map likewise). Three matchers use them: an
exhaustive search of every integer position within --radius level pixels of each
finest-level pixel (an identity prior the network does not have), also with its
displacements smoothed by a Gaussian of --smooth level pixels (a smoothness prior,
which the network does not have either); the network's own
dense level and PatchMatch; and PatchMatch started from the identity instead of the
dense level. The network is untrained, its update blocks' flow heads zeroed, so that
PatchMatch is propagation and selection alone: what the ConvGRU must learn to improve.
"""

from __future__ import annotations

import argparse
import time

from harness import ROOT, markdown_table, write_report

# seconds: wall clock since the start, the earlier rows' evaluations included
COLUMNS = [("step", "step"), ("seconds", "seconds"), ("warp-self", "warp_self"), ("EPE", "epe"),
           ("zero flow", "zero_flow"), ("ratio", "ratio"), ("dense level EPE / zero", "dense"),
           ("objects EPE / zero", "objects"),
           ("background EPE / zero", "background"), ("background share", "background_share"),
           ("warp PSNR gain (dB)", "psnr_gain")]


def finest_predictions(model, data_config, batches: int, batch_size: int):
    """Per held-out batch with known flow at the finest level: (batch as NumPy, the
    correspondence's output, true flow and its mask at that level, predicted positions)."""
    from cocosnet_tf import metrics
    from cocosnet_tf.data.pipeline import build_dataset
    from cocosnet_tf.models.cocosnet.correspondence.network import level_factor

    factor = level_factor(model.config.model.corr_levels - 1)
    for i, batch in enumerate(build_dataset(data_config, batch_size, repeat=False)):
        if i == batches:
            break
        batch = {k: v.numpy() for k, v in batch.items()}
        out = model.correspondence(batch["label"], batch["exemplar"], batch["exemplar_label"])
        flow, mask = metrics.flow_at_level(batch["flow"], metrics.valid_flow_mask(batch), factor)
        if out["positions"] and mask.any():
            predicted = metrics.expected_positions(out["positions"][-1].numpy(), out["weights"][-1].numpy())
            yield batch, out, flow, mask, predicted


def region_errors(model, data_config, batches: int = 4, batch_size: int = 8) -> dict:
    """Finest-level end-point errors of the model and of the zero flow, inside objects and
    on the background (class 0 over the whole block), on heldout.heldout_report's pairs."""
    import numpy as np

    from cocosnet_tf import metrics
    from cocosnet_tf.models.cocosnet.correspondence.network import level_factor
    factor = level_factor(model.config.model.corr_levels - 1)
    errors = {"objects": ([], []), "background": ([], [])}
    for batch, _, flow, mask, predicted in finest_predictions(model, data_config, batches, batch_size):
        zero = metrics.identity_positions(*mask.shape)
        background = metrics.block_mean(batch["label"][..., :1], factor)[..., 0] == 1
        for name, region in (("objects", mask & ~background), ("background", mask & background)):
            errors[name][0].append(metrics.endpoint_errors(predicted, flow, region))
            errors[name][1].append(metrics.endpoint_errors(zero, flow, region))
    means = {name: [float(np.mean(np.concatenate(e))) for e in pair] for name, pair in errors.items()}
    sizes = {name: sum(e.size for e in pair[0]) for name, pair in errors.items()}
    return {**means, "background_share": sizes["background"] / max(1, sum(sizes.values()))}


def zero_flow_heads(net) -> list:
    """Zero the update blocks' flow heads (their offset corrections); returns their variables."""
    import tensorflow as tf

    heads = [variable for patch_match in net.patch_match for variable in patch_match.update.head_2.weights]
    for variable in heads:
        variable.assign(tf.zeros_like(variable))
    return heads


DIAGNOSIS = [("EPE", "epe"), ("zero flow", "zero_flow"), ("top-1 candidate EPE", "top1"),
             ("best-of-K EPE", "best_of_k"), ("mean largest weight", "max_weight"), ("1 / K", "uniform"),
             ("photo-to-photo EPE", "photo"), ("EPE, flow heads zeroed", "unrefined")]


def diagnose(model, data_config, batches: int = 4, batch_size: int = 8) -> dict:
    """The --run diagnosis (module docstring) on heldout.heldout_report's pairs."""
    import numpy as np

    from cocosnet_tf import metrics

    net, rows = model.correspondence, {key: [] for _, key in DIAGNOSIS if key != "uniform"}
    for batch, out, flow, mask, predicted in finest_predictions(model, data_config, batches, batch_size):
        positions, weights = out["positions"][-1].numpy(), out["weights"][-1].numpy()
        top = np.take_along_axis(positions, np.argmax(weights, -1)[..., None, None], -2)[..., 0, :]
        # the target photo's exemplar-branch projections stand in for the label's theta
        photo = net.match(net.project_exemplar(net.align(batch["image"], batch["label"])),
                          net.project_exemplar(net.align(batch["exemplar"], batch["exemplar_label"])),
                          batch["exemplar"])
        rows["epe"].append(metrics.endpoint_errors(predicted, flow, mask))
        rows["zero_flow"].append(metrics.endpoint_errors(metrics.identity_positions(*mask.shape), flow, mask))
        rows["top1"].append(metrics.endpoint_errors(top, flow, mask))
        rows["best_of_k"].append(metrics.endpoint_errors(positions, flow[..., None, :], mask).min(-1))
        rows["max_weight"].append(weights.max(-1)[mask])
        rows["photo"].append(metrics.endpoint_errors(
            metrics.expected_positions(photo["positions"][-1].numpy(), photo["weights"][-1].numpy()), flow, mask))
    # what the features and the search find without the ConvGRU's corrections
    with net.flow_heads_zeroed():
        rows["unrefined"] = [metrics.endpoint_errors(predicted, flow, mask) for _, _, flow, mask, predicted
                             in finest_predictions(model, data_config, batches, batch_size)]
    result = {key: round(float(np.mean(np.concatenate(values))), 3) for key, values in rows.items()}
    return {**result, "uniform": round(1.0 / weights.shape[-1], 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--run", default=None, metavar="DIR", help="diagnose this trained run instead of training")
    parser.add_argument("--frozen-refinement", action="store_true",
                        help="train with the update blocks' flow heads zeroed and frozen: features and search alone")
    parser.add_argument("--ceiling", action="store_true", help="hand-made label features (module docstring)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 3.0],
                        help="--ceiling: Gaussian blurs in level pixels; label_nc x their count <= model.nef")
    parser.add_argument("--radius", type=int, default=4, help="--ceiling: the exhaustive search's reach")
    parser.add_argument("--smooth", type=float, default=2.0, help="--ceiling: blur of the searched displacements")
    parser.add_argument("--out", default=None,
                        help="JSON (default: docs/results/correspondence_learning.json, "
                             "or correspondence_diagnosis.json with --run)")
    args = parser.parse_args(argv)
    results = ROOT / "docs" / "results"
    if args.run is not None:
        return diagnose_run(parser, args.run, args.overrides, args.out or str(results / "correspondence_diagnosis.json"))
    if args.ceiling:
        return ceiling_run(parser, args, args.out or str(results / "correspondence_ceiling.json"))
    args.out = args.out or str(results / "correspondence_learning.json")
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be >= 1")

    import keras
    import tensorflow as tf

    from cocosnet_tf.data.pipeline import build_dataset
    from cocosnet_tf.heldout import heldout_data, heldout_report
    from cocosnet_tf.layers.spectral import power_iterations

    config = synthetic_config(parser, args)
    keras.mixed_precision.set_dtype_policy(config.train.mixed_precision)
    model = seeded_model(config)
    model.compile()
    net, optimizer = model.correspondence, model.g_optimizer
    frozen = {id(v) for v in zero_flow_heads(net)} if args.frozen_refinement else set()
    variables = [v for v in net.trainable_variables if id(v) not in frozen]

    @tf.function
    def train_step(batch):
        batch = model.training_batch(batch)
        with tf.GradientTape() as tape:
            out = net(batch["label"], batch["exemplar"], batch["exemplar_label"], image=batch["image"],
                      training=True, step=optimizer.iterations)
            losses = model.correspondence_losses(batch, out, tf.reduce_sum(batch["self_ref"]))
            scaled = optimizer.scale_loss(tf.add_n(list(losses.values())))
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return losses

    data, heldout = iter(build_dataset(config.data, config.train.batch_size)), heldout_data(config)
    rows, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        power_iterations(net)
        losses = train_step(next(data))
        if step % args.every and step != args.steps:
            continue
        seconds = time.perf_counter() - start
        report, regions = heldout_report(model, config), region_errors(model, heldout)
        rows.append({"step": step, "seconds": round(seconds), "warp_self": round(float(losses.get("warp_self", 0.0)), 1),
                     "epe": round(report["epe_finest"], 2), "zero_flow": round(report["epe_zero_flow"], 2),
                     "ratio": round(report["epe_ratio"], 2),
                     "dense": "{:.2f} / {:.2f}".format(report["levels"][0]["model"]["epe"],
                                                       report["levels"][0]["zero_flow"]["epe"]),
                     "objects": "{:.2f} / {:.2f}".format(*regions["objects"]),
                     "background": "{:.2f} / {:.2f}".format(*regions["background"]),
                     "background_share": round(regions["background_share"], 2),
                     "psnr_gain": round(report["psnr_gain"], 2)})
        print(markdown_table(COLUMNS, rows[-1:]).splitlines()[-1], flush=True)
    write_report(args.out, [{"config": args.config, "set": args.overrides, "frozen_refinement": args.frozen_refinement,
                             **row} for row in rows],
                 markdown_table(COLUMNS, rows))
    return 0


def synthetic_config(parser, args):
    """The --config with --set, which must train on synthetic scenes (true flow, class 0
    the background) with at least one PatchMatch level."""
    from cocosnet_tf.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        parser.error(str(err))
    if config.data.dataset != "synthetic" or config.model.corr_levels < 2:
        parser.error("needs data.dataset: synthetic (true flow, class 0 the background) and model.corr_levels >= 2")
    return config


def seeded_model(config):
    """A new CoCosNet built from train.seed."""
    import keras

    from cocosnet_tf.models.cocosnet.model import CoCosNet

    keras.utils.set_random_seed(config.train.seed)
    model = CoCosNet(config, config.data.semantic_nc)
    model.build_all(*config.data.crop_size)
    return model


def diagnose_run(parser, run: str, overrides: list[str], out: str) -> int:
    from cocosnet_tf.config import ConfigError
    from cocosnet_tf.heldout import heldout_data
    from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config

    try:
        config = load_run_config(run, overrides)
        model = load_model(config, find_checkpoint(run, None))
    except ConfigError as err:
        parser.error(str(err))
    if config.data.dataset != "synthetic" or config.model.corr_levels < 2:
        parser.error("needs a run on data.dataset: synthetic (true flow) with model.corr_levels >= 2")
    row = {"run": run, "set": overrides, **diagnose(model, heldout_data(config))}
    write_report(out, [row], markdown_table(DIAGNOSIS, [row]))
    return 0


CEILING = [("matcher", "matcher"), ("EPE", "epe"), ("zero flow", "zero_flow"), ("ratio", "ratio"),
           ("best-of-K EPE", "best_of_k"), ("mean largest weight", "max_weight"),
           ("distinct candidates", "distinct")]


def label_descriptors(label, factor: int, sigmas: list[float], channels: int):
    """[B, h, w, channels]: the one-hot label block-averaged by `factor`, blurred by each
    sigma (level pixels), concatenated, centred and normalised over channels, zero-padded
    (after the normalisation, so padding changes no dot product)."""
    import numpy as np
    import tensorflow as tf
    from scipy.ndimage import gaussian_filter

    from cocosnet_tf import metrics
    from cocosnet_tf.layers.norms import l2_normalize_channels

    pooled = metrics.block_mean(label, factor)
    blurred = np.concatenate([gaussian_filter(pooled, (0, s, s, 0), mode="nearest") for s in sigmas], -1)
    normalised = l2_normalize_channels(tf.constant(blurred, tf.float32), centre=True)
    return tf.pad(normalised, [[0, 0], [0, 0], [0, 0], [0, channels - blurred.shape[-1]]])


def window_search(queries, values, radius: int):
    """Per pixel, the integer position (x, y) within `radius` of it (clamped to the map)
    whose value has the largest dot product with its query."""
    import numpy as np

    queries, values = np.asarray(queries), np.asarray(values)
    b, h, w, _ = queries.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    best, score = np.zeros((b, h, w, 2)), np.full((b, h, w), -np.inf)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            y, x = np.clip(rows + dy, 0, h - 1), np.clip(cols + dx, 0, w - 1)
            candidate = np.einsum("bhwc,bhwc->bhw", queries, values[:, y, x])
            better = candidate > score
            score = np.where(better, candidate, score)
            best = np.where(better[..., None], np.stack([x, y], -1)[None].astype(float), best)
    return best


def smoothed(positions, sigma: float):
    """Positions (x, y) [B, h, w, 2] whose displacements are blurred by a Gaussian."""
    from scipy.ndimage import gaussian_filter

    from cocosnet_tf import metrics

    identity = metrics.identity_positions(*positions.shape[:3])
    return identity + gaussian_filter(positions - identity, (0, sigma, sigma, 0), mode="nearest")


def distinct_positions(positions):
    """[B, h, w]: how many different positions the K candidates [B, h, w, K, 2] hold."""
    import numpy as np

    same = np.all(np.abs(positions[..., :, None, :] - positions[..., None, :, :]) < 1e-6, axis=-1)
    repeats = np.any(np.tril(same, -1), axis=-1)  # an earlier candidate holds the same position
    return positions.shape[-2] - np.count_nonzero(repeats, axis=-1)


def ceiling(model, data_config, sigmas: list[float], radius: int, smooth: float, batches: int = 4, batch_size: int = 8) -> list[dict]:
    """The --ceiling rows (module docstring) on heldout.heldout_report's pairs."""
    import numpy as np
    import tensorflow as tf

    from cocosnet_tf import metrics
    from cocosnet_tf.data.pipeline import build_dataset
    from cocosnet_tf.models.cocosnet.correspondence.network import level_factor
    from cocosnet_tf.models.cocosnet.correspondence.patchmatch import row_column_grid

    net, levels = model.correspondence, model.config.model.corr_levels
    zero_flow_heads(net)
    names = ("exhaustive search", f"exhaustive search, smoothed ({smooth:g})", "dense level + PatchMatch",
             "identity + PatchMatch")
    errors = {name: ([], [], [], []) for name in ("zero flow",) + names}
    for i, batch in enumerate(build_dataset(data_config, batch_size, repeat=False)):
        if i == batches:
            break
        batch = {k: v.numpy() for k, v in batch.items()}
        flow, mask = metrics.flow_at_level(batch["flow"], metrics.valid_flow_mask(batch),
                                           level_factor(levels - 1))
        if not mask.any():
            continue
        theta, phi = ([label_descriptors(batch[key], level_factor(level), sigmas, net.nef) for level in range(levels)]
                      for key in ("label", "exemplar_label"))
        identity = tf.broadcast_to(row_column_grid(*theta[0].shape[1:3]), theta[0].shape[:3] + [2])
        searched = window_search(theta[-1], phi[-1], radius)
        found = {"zero flow": (metrics.identity_positions(*mask.shape), None, None),
                 names[0]: (searched, None, None), names[1]: (smoothed(searched, smooth), None, None)}
        for name, out in ((names[2], net.match(theta, phi, batch["exemplar"])),
                          (names[3], net.refine(theta, phi, batch["exemplar"], identity))):
            positions, weights = out["positions"][-1].numpy(), out["weights"][-1].numpy()
            found[name] = (metrics.expected_positions(positions, weights), positions, weights)
        for name, (predicted, positions, weights) in found.items():
            errors[name][0].append(metrics.endpoint_errors(predicted, flow, mask))
            if positions is not None:
                errors[name][1].append(metrics.endpoint_errors(positions, flow[..., None, :], mask).min(-1))
                errors[name][2].append(weights.max(-1)[mask])
                errors[name][3].append(distinct_positions(positions)[mask])
    zero = float(np.mean(np.concatenate(errors["zero flow"][0])))
    rows = []
    for name in names:
        epe, best, largest, distinct = (round(float(np.mean(np.concatenate(e))), 3) if e else None
                                        for e in errors[name])
        rows.append({"matcher": name, "epe": epe, "zero_flow": round(zero, 3), "ratio": round(epe / zero, 3),
                     "best_of_k": best, "max_weight": largest, "distinct": distinct})
    return rows


def ceiling_run(parser, args, out: str) -> int:
    from cocosnet_tf.heldout import heldout_data

    config = synthetic_config(parser, args)
    if args.radius < 1 or not args.sigmas or min(args.sigmas) <= 0 or not args.smooth > 0:
        parser.error("--radius must be >= 1, every --sigmas value and --smooth > 0")
    if config.data.semantic_nc * len(args.sigmas) > config.model.nef:
        parser.error(f"{config.data.semantic_nc} label channels x {len(args.sigmas)} sigmas exceed "
                     f"model.nef {config.model.nef}, the width PatchMatch's update block takes")
    model = seeded_model(config)
    rows = [{"set": args.overrides, "sigmas": args.sigmas, "radius": args.radius, "smooth": args.smooth, **row}
            for row in ceiling(model, heldout_data(config), args.sigmas, args.radius, args.smooth)]
    write_report(out, rows, markdown_table(CEILING, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
