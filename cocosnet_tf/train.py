"""`python -m cocosnet_tf.train`: train the model of the config (model.kind; CoCosNet v2 by default).

    python -m cocosnet_tf.train                          # configs/demo.yaml, synthetic data
    python -m cocosnet_tf.train --config configs/ade20k_256.yaml --run-dir runs/ade
    python -m cocosnet_tf.train --run-dir runs/ade --resume

The run directory holds config.yaml (resolved), checkpoints/, logs/ (TensorBoard),
samples/ (PNG grids) and, at the end, heldout.json (correspondence and warp quality on
held-out pairs with true flow, when the data has it). A checkpoint (ckpt-STEP.index and
its .data file) holds everything training needs to continue: the weights of the
correspondence network, the generator and the discriminator, both optimisers' state
(Adam's moments, about twice the weights) and the step (the data position follows from
it). Checkpoints are written every train.checkpoint_every steps and on exit, including
Ctrl-C and SIGTERM (the running step finishes first); the newest train.keep_checkpoints
are kept. A non-finite loss stops training with an error; the last good checkpoint stays.

--resume continues from the newest complete checkpoint in DIR/checkpoints (found from
the files, so also one written just before a run was stopped), with the run's
config.yaml plus any --set. A checkpoint that cannot be read, or whose weights do not
fit the networks of the resumed config (a --set that changes their shape), is a one-line
error, and the run's files stay as they were: config.yaml is rewritten only once the
checkpoint has been restored. Without --resume, a run directory that holds a complete
checkpoint is never trained over.

Strategy: MultiWorkerMirroredStrategy when TF_CONFIG names several workers,
MirroredStrategy over the visible GPUs (or over train.logical_cpus logical CPUs), the
default strategy otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cocosnet_tf.checkpoints import check_readable, complete_checkpoints, newest_checkpoint
from cocosnet_tf.cli import add_config_arguments, config_from_args, run
from cocosnet_tf.config import Config, ConfigError, load_config
from cocosnet_tf.data.kinds import dataset_kind
from cocosnet_tf.models.registry import model_kind


def resume_point(run_dir: Path, overrides: list[str]) -> tuple[Config, Config, str]:
    """(the run's config, the config to resume with, the checkpoint to resume from)."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume: {saved} does not exist")
    folder = run_dir / "checkpoints"
    checkpoint = newest_checkpoint(str(folder))
    if checkpoint is None:
        raise ConfigError(f"--resume: no complete checkpoint in {folder}; the run never saved one, so run the "
                          "command without --resume to start it afresh")
    return load_config(str(saved)), load_config(str(saved), overrides), checkpoint


def refuse_existing_run(run_dir: Path) -> None:
    """A run directory with a complete checkpoint is continued or left alone; one whose
    first save never completed holds nothing to keep."""
    folder = run_dir / "checkpoints"
    found = complete_checkpoints(str(folder))
    if found:
        raise ConfigError(f"{run_dir} already holds a run (newest checkpoint {found[-1]}): pass --resume to "
                          "continue it, or --run-dir NEW_DIR to start another")
    if folder.exists():
        print(f"note: {folder} holds no complete checkpoint (a run stopped before its first save); "
              "starting afresh", flush=True)


def next_commands(run_dir: Path, config: Config) -> list[str]:
    inputs = dataset_kind(config.data).translate_args
    features = []
    if config.model.kind == "pix2pixhd":
        inputs = inputs.split(" --exemplar ")[0]
        if config.model.pix2pixhd.feature_channels:
            features = [f"  python -m cocosnet_tf.pix2pixhd_features --run {run_dir} --clusters 10      # first: "
                        "the feature clusters evaluate and translate use"]
            inputs += " [--feature-cluster CLASS=K]"
    return ["next:", *features,
            f"  python -m cocosnet_tf.evaluate --run {run_dir}      # every metric, "
            f"{config.evaluate.num_samples or 'all'} held-out pairs",
            f"  python -m cocosnet_tf.translate --run {run_dir} {inputs} --out out.png",
            f"  python -m cocosnet_tf.export onnx --run {run_dir} --out exports/onnx      # or savedmodel",
            "  python -m cocosnet_tf.serving --model-dir exports/onnx/cocosnet      # REST on 8501, gRPC on 8500"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.train", description=__doc__.split("\n\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--run-dir", default=None, help="output directory (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its newest complete checkpoint")
    args = parser.parse_args(argv)

    def body() -> None:
        config = config_from_args(args)
        name = Path(args.config).stem if args.config else "demo"
        run_dir = Path(args.run_dir or Path("runs") / name)
        run_config, resume_from = None, None
        if args.resume:
            run_config, config, resume_from = resume_point(run_dir, args.overrides)
        else:
            refuse_existing_run(run_dir)
        model_kind(config)  # a kind that does not exist fails before anything loads
        print(f"training {run_dir}: {config.train.steps} steps of batch {config.train.batch_size}, "
              f"{config.data.dataset} data at {' x '.join(map(str, config.data.crop_size))}", flush=True)

        # TensorFlow loads from here on
        from cocosnet_tf.callbacks import NonFiniteLossError
        from cocosnet_tf.heldout import heldout_lines
        from cocosnet_tf.losses.vgg import find_weights
        from cocosnet_tf.models.training import uses_vgg
        from cocosnet_tf.trainer import Trainer, configure_devices, weights_fingerprint

        # everything that can refuse the run comes before anything is written
        if uses_vgg(config):
            find_weights(config.losses.vgg_weights, config.losses.vgg_network)
        if resume_from is not None:
            check_readable(resume_from)
        configure_devices(config)
        trainer = Trainer(config, run_dir, resume_from, run_config)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.yaml")
        started = time.perf_counter()
        try:
            trainer.train()
        except NonFiniteLossError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(3)
        minutes = (time.perf_counter() - started) / 60
        # every worker prints it: replicas and workers must end with the same weights
        print(f"weights fingerprint: {weights_fingerprint(trainer.model.variables)}", flush=True)
        if not trainer.chief:
            return
        step = int(trainer.step)
        if step < config.train.steps:
            print(f"stopped at step {step} of {config.train.steps} after {minutes:.1f} min; continue with:\n"
                  f"  python -m cocosnet_tf.train --run-dir {run_dir} --resume")
            return
        lines = heldout_lines(trainer.heldout.report)
        print("\n".join([f"done: {step} steps in {minutes:.1f} min, in {run_dir}", *lines,
                         *next_commands(run_dir, config)]), flush=True)

    run(body)


if __name__ == "__main__":
    main()
