"""How far the correspondence network learns on its own, on the synthetic scenes.

    python benchmarks/correspondence_learning.py                      # demo config, 1000 steps
    python benchmarks/correspondence_learning.py --steps 600 --every 200 \\
        --set data.synthetic.warp_strength=2.0 data.synthetic.min_objects=8 data.synthetic.max_objects=14
    python benchmarks/correspondence_learning.py --run runs/demo         # diagnose a trained run

Trains only the correspondence network, on its own losses (warp-self, warp-cycle,
alignment; the generator side's Adam, spectral power iterations as in training), and
every --every steps reports the held-out finest-level end-point error against the zero
flow (train.heldout_report's pairs), split into pixels inside objects and background
pixels (class 0). A diagnostic for the demo's EPE target (README, "The demo run"): it
separates what the correspondence learns from the generator and the discriminator, and
shows where its error is. One process, no XLA; the table is printed as markdown and
written to --out as JSON.

With --run it trains nothing and diagnoses that run's correspondence on the same pairs:
the finest level's EPE of the expected position (what the warp samples), of the
top-weighted candidate and of the best of the K candidates (whether the search found
the match), the mean largest softmax weight against 1/K (whether the scores tell the
candidates apart), and the EPE when the target photo's exemplar-branch features stand
in for the label's (whether the features localise at all, without the domain gap).
"""

from __future__ import annotations

import argparse
import time

from harness import ROOT, markdown_table, write_report

# seconds: wall clock since the start, the earlier rows' evaluations included
COLUMNS = [("step", "step"), ("seconds", "seconds"), ("warp-self", "warp_self"), ("EPE", "epe"),
           ("zero flow", "zero_flow"), ("ratio", "ratio"), ("objects EPE / zero", "objects"),
           ("background EPE / zero", "background"), ("background share", "background_share"),
           ("warp PSNR gain (dB)", "psnr_gain")]


def region_errors(model, data_config, batches: int = 4, batch_size: int = 8) -> dict:
    """Finest-level end-point errors of the model and of the zero flow, inside objects and
    on the background (class 0 over the whole block), on train.heldout_report's pairs."""
    import numpy as np

    from cocosnet_tf import metrics
    from cocosnet_tf.correspondence.network import level_factor
    from cocosnet_tf.train import finest_predictions

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


DIAGNOSIS = [("EPE", "epe"), ("zero flow", "zero_flow"), ("top-1 candidate EPE", "top1"),
             ("best-of-K EPE", "best_of_k"), ("mean largest weight", "max_weight"), ("1 / K", "uniform"),
             ("photo-to-photo EPE", "photo")]


def diagnose(model, data_config, batches: int = 4, batch_size: int = 8) -> dict:
    """The --run diagnosis (module docstring) on train.heldout_report's pairs."""
    import numpy as np

    from cocosnet_tf import metrics
    from cocosnet_tf.train import finest_predictions

    net, rows = model.correspondence, {key: [] for _, key in DIAGNOSIS if key != "uniform"}
    for batch, out, flow, mask, predicted in finest_predictions(model, data_config, batches, batch_size):
        positions, weights = out["positions"][-1].numpy(), out["weights"][-1].numpy()
        top = np.take_along_axis(positions, np.argmax(weights, -1)[..., None, None], -2)[..., 0, :]
        distances = np.hypot(*np.moveaxis(positions - flow[..., None, :], -1, 0))
        # the target photo's exemplar-branch projections stand in for the label's theta
        photo = net.match(net.project_exemplar(net.align(batch["image"], batch["label"])),
                          net.project_exemplar(net.align(batch["exemplar"], batch["exemplar_label"])),
                          batch["exemplar"])
        rows["epe"].append(metrics.endpoint_errors(predicted, flow, mask))
        rows["zero_flow"].append(metrics.endpoint_errors(metrics.identity_positions(*mask.shape), flow, mask))
        rows["top1"].append(metrics.endpoint_errors(top, flow, mask))
        rows["best_of_k"].append(distances.min(-1)[mask])
        rows["max_weight"].append(weights.max(-1)[mask])
        rows["photo"].append(metrics.endpoint_errors(
            metrics.expected_positions(photo["positions"][-1].numpy(), photo["weights"][-1].numpy()), flow, mask))
    result = {key: round(float(np.mean(np.concatenate(values))), 3) for key, values in rows.items()}
    return {**result, "uniform": round(1.0 / weights.shape[-1], 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--run", default=None, metavar="DIR", help="diagnose this trained run instead of training")
    parser.add_argument("--out", default=None,
                        help="JSON (default: benchmarks/results/correspondence_learning.json, "
                             "or correspondence_diagnosis.json with --run)")
    args = parser.parse_args(argv)
    results = ROOT / "benchmarks" / "results"
    if args.run is not None:
        return diagnose_run(parser, args.run, args.overrides, args.out or str(results / "correspondence_diagnosis.json"))
    args.out = args.out or str(results / "correspondence_learning.json")
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be >= 1")

    import keras
    import tensorflow as tf

    from cocosnet_tf.config import ConfigError, load_config
    from cocosnet_tf.data.pipeline import build_dataset
    from cocosnet_tf.layers.spectral import power_iterations
    from cocosnet_tf.model import CoCosNet
    from cocosnet_tf.train import heldout_data, heldout_report

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        parser.error(str(err))
    if config.data.dataset != "synthetic" or config.model.corr_levels < 2:
        parser.error("needs data.dataset: synthetic (true flow, class 0 the background) and model.corr_levels >= 2")
    keras.mixed_precision.set_dtype_policy(config.train.mixed_precision)
    keras.utils.set_random_seed(config.train.seed)
    model = CoCosNet(config, config.data.semantic_nc)
    model.build_all(*config.data.crop_size)
    model.setup_training()
    net, optimizer = model.correspondence, model.g_optimizer
    variables = net.trainable_variables

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
        report, regions = heldout_report(model, heldout), region_errors(model, heldout)
        rows.append({"step": step, "seconds": round(seconds), "warp_self": round(float(losses.get("warp_self", 0.0)), 1),
                     "epe": round(report["epe_finest"], 2), "zero_flow": round(report["epe_zero_flow"], 2),
                     "ratio": round(report["epe_ratio"], 2),
                     "objects": "{:.2f} / {:.2f}".format(*regions["objects"]),
                     "background": "{:.2f} / {:.2f}".format(*regions["background"]),
                     "background_share": round(regions["background_share"], 2),
                     "psnr_gain": round(report["psnr_gain"], 2)})
        print(markdown_table(COLUMNS, rows[-1:]).splitlines()[-1], flush=True)
    write_report(args.out, [{"config": args.config, "set": args.overrides, **row} for row in rows],
                 markdown_table(COLUMNS, rows))
    return 0


def diagnose_run(parser, run: str, overrides: list[str], out: str) -> int:
    from cocosnet_tf.config import ConfigError
    from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config
    from cocosnet_tf.train import heldout_data

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


if __name__ == "__main__":
    raise SystemExit(main())
