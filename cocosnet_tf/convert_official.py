"""Convert an official CoCosNet v2 checkpoint (microsoft/CoCosNet-v2) into a run directory.

  python -m cocosnet_tf.convert_official --checkpoint-dir DIR --config FILE --out RUN_DIR

DIR holds the official `<epoch>_net_Corr.pth` and `<epoch>_net_G.pth`, and optionally
`<epoch>_net_D.pth` (--epoch, default latest). The released DeepFashionHD archive,
whose Corr file also holds the G and D files, is read as it is. FILE is the config of
the same architecture (configs/deepfashion_hd_512.yaml for the released checkpoint).

Every official parameter is used or explicitly ignored (the discriminator's unused
decoder) and every variable of the correspondence network and the generator (and the
discriminator, when its file is there) is set; anything else is an error listing the
keys and shapes that did not match, and nothing is written.

RUN_DIR gets config.yaml, checkpoints/ and conversion.json (sources, their SHA-256,
what was used and ignored); translate, evaluate and export read it like a trained run.
Its config has `model.sampling: nearest`, the official integer sampling the checkpoint
was trained with (bilinear sampling would compute something else with these weights).
Reading .pth files needs PyTorch: the `convert` extra.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from typing import TYPE_CHECKING

from cocosnet_tf.cli import add_set_argument, run
from cocosnet_tf.config import SIZE_MULTIPLE, ConfigError, load_config
from cocosnet_tf.fileio import atomic_write_text, staged_directory
from cocosnet_tf.official import pth

# Keras, TensorFlow and the networks are imported where they are used, so that --help
# and usage errors answer without loading them
if TYPE_CHECKING:
    from cocosnet_tf.models.cocosnet.model import CoCosNet

REQUIRED = ("Corr", "G")
OPTIONAL = ("D",)
CONVERTED_OVERRIDES = ["model.sampling=nearest"]


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(config) -> CoCosNet:
    """Every variable of the model; weights do not depend on the image size, so the
    smallest size the networks take is enough."""
    import keras

    from cocosnet_tf.models.cocosnet.model import CoCosNet

    keras.mixed_precision.set_dtype_policy("float32")
    model = CoCosNet(config, config.data.semantic_nc)
    model.build_all(2 * SIZE_MULTIPLE, 2 * SIZE_MULTIPLE)
    return model


def write_run(out: str, config, model: CoCosNet, report: dict) -> None:
    """config.yaml, checkpoints/ckpt-0 and conversion.json into `out`, all or nothing."""
    import tensorflow as tf

    with staged_directory(out, prefix=".convert-") as staged:
        config.save(os.path.join(staged, "config.yaml"))
        checkpoint = tf.train.Checkpoint(model=model)
        tf.train.CheckpointManager(checkpoint, os.path.join(staged, "checkpoints"), max_to_keep=1).save(
            checkpoint_number=0)
        atomic_write_text(os.path.join(staged, "conversion.json"), json.dumps(report, indent=2) + "\n")


def convert(checkpoint_dir: str, config_path: str, overrides: list[str], out: str, epoch: str = "latest") -> dict:
    from cocosnet_tf.official import assign

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConfigError(f"--out {out} already exists; name a new run directory")
    if os.path.isdir(out):
        os.rmdir(out)  # empty: replaced by the finished run
    config = load_config(config_path, list(overrides) + CONVERTED_OVERRIDES)
    networks = pth.read_networks(checkpoint_dir, epoch, REQUIRED + OPTIONAL, optional=OPTIONAL)
    model = build(config)
    states = {name: state for name, (_, state) in networks.items()}
    report = assign.assign(model, states)
    report["sources"] = {name: {"file": source, "sha256": sha256(source) if os.path.isfile(source) else None}
                         for name, (source, _) in networks.items()}
    report["discriminator"] = "converted" if "D" in networks else "not in the checkpoint: initial weights"
    report["sampling"] = config.model.sampling
    write_run(out, config, model, report)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.convert_official",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--checkpoint-dir", required=True, metavar="DIR", help="folder of the official .pth files")
    parser.add_argument("--config", required=True, metavar="FILE", help="config of the same architecture")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="new run directory to write")
    parser.add_argument("--epoch", default="latest", help="file prefix of the official files (default latest)")
    add_set_argument(parser)
    args = parser.parse_args(argv)

    def body() -> None:
        report = convert(args.checkpoint_dir, args.config, args.overrides, args.out, args.epoch)
        for name, source in report["sources"].items():
            ignored = len(report["ignored"].get(name, []))
            print(f"{name}: {report['assigned'][name]} parameters from {source['file']}"
                  + (f", {ignored} ignored" if ignored else ""))
        print(f"discriminator: {report['discriminator']}")
        print(f"wrote {args.out} (model.sampling: {report['sampling']})")

    run(body)


if __name__ == "__main__":
    main()
