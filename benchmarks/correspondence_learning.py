"""How far the correspondence network learns on its own, on the synthetic scenes.

    python benchmarks/correspondence_learning.py                      # demo config, 1000 steps
    python benchmarks/correspondence_learning.py --steps 600 --every 200 \\
        --set data.synthetic.warp_strength=2.0 data.synthetic.min_objects=8 data.synthetic.max_objects=14

Trains only the correspondence network, on its own losses (warp-self, warp-cycle,
alignment; the generator side's Adam, spectral power iterations as in training), and
every --every steps reports the held-out finest-level end-point error against the zero
flow (train.heldout_report's pairs), split into pixels inside objects and background
pixels (class 0). A diagnostic for the demo's EPE target (README, "The demo run"): it
separates what the correspondence learns from the generator and the discriminator, and
shows where its error is. One process, no XLA; the table is printed as markdown and
written to --out as JSON.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "correspondence_learning.json"))
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
