"""`python -m cocosnet_tf.export`: a trained run -> SavedModel for TF-Serving, or ONNX for ONNX Runtime.

    python -m cocosnet_tf.export savedmodel --run runs/demo --out exports/savedmodel [--name cocosnet] [--version 1]
    python -m cocosnet_tf.export onnx --run runs/demo --out exports/onnx [--opset 17] [--float16]

Both write BASE/NAME/VERSION/ (TF-Serving's layout; NAME and VERSION default to the run
config's export.model_name and export.version) with the resolved config in
assets.extra/config.yaml. A SavedModel holds the signatures `serving_default` (float
tensors) and `translate_encoded` (PNG/JPEG bytes in, PNG out); an ONNX export holds
model.onnx (the float signature) and, with --float16, model_fp16.onnx.

Before anything is moved into place the export is verified against the Keras model on
sample inputs at the run's size (batch 2) and at a second size (batch 1), and every
maximum difference is printed; above the tolerance (export.tolerance, 1e-4 in float32;
export.fp16_tolerance for float16) the command fails and writes nothing. Which values
must match and why the others cannot is in cocosnet_tf/export/verify.py. An existing version is
never overwritten.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from cocosnet_tf.cli import add_run_arguments, add_set_argument, run
from cocosnet_tf.config import ConfigError
from cocosnet_tf.export import layout


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.export", description=__doc__.split("\n\nBefore")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="format", required=True, metavar="{savedmodel,onnx}")
    for name, help_text in (("savedmodel", "SavedModel for TF-Serving"), ("onnx", "ONNX for ONNX Runtime")):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_run_arguments(sub)
        add_set_argument(sub)
        sub.add_argument("--out", required=True, metavar="BASE", help="base folder; writes BASE/NAME/VERSION")
        sub.add_argument("--name", default=None, help="model name (default: export.model_name)")
        sub.add_argument("--version", type=int, default=None, help="version number (default: export.version)")
        if name == "onnx":
            sub.add_argument("--opset", type=int, default=None,
                             help="ONNX opset (default: export.onnx_opset); lower ones are tried if it fails")
            sub.add_argument("--float16", action="store_true",
                             help="also write model_fp16.onnx (generator in float16, for GPUs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)

    def body() -> None:
        # imported here, not at the top: --help and usage errors answer without TensorFlow
        import tensorflow as tf

        from cocosnet_tf.export.graph import float_function
        from cocosnet_tf.models.training import full_precision
        from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config

        config = load_run_config(args.run, args.overrides)
        # an exported graph holds TensorFlow ops only: a compiled op would need its
        # library wherever the SavedModel is loaded, and ONNX has no such op
        config = replace(config, runtime=replace(config.runtime, compiled_ops=False))
        x = config.export
        version = x.version if args.version is None else args.version
        path = layout.version_dir(args.out, args.name or x.model_name, version)
        opset = x.onnx_opset if getattr(args, "opset", None) is None else args.opset
        if args.format == "onnx":
            from cocosnet_tf.export import to_onnx

            to_onnx.check_opset(opset)
            if full_precision(config) == tf.float64:
                raise ConfigError(f"{args.run}: a float64 run (train.mixed_precision) cannot go to ONNX: "
                                  "ONNX Runtime has no float64 convolution on CPU; export it as a SavedModel")
        checkpoint = find_checkpoint(args.run, args.checkpoint)
        model = load_model(config, checkpoint)
        translate = float_function(model)  # traced once, for the export and its checks
        start = time.perf_counter()
        with layout.staged_version(path) as staged:
            if args.format == "savedmodel":
                from cocosnet_tf.export import savedmodel

                savedmodel.write(model, translate, config, staged)
                lines = savedmodel.check(translate, config, staged, x.tolerance)
            else:
                lines = write_onnx(translate, config, staged, opset, args.float16)
            layout.save_config(staged, config)
            for line in lines:
                print(f"verified {line}", flush=True)
        print(f"wrote {path} ({args.format}, checkpoint {checkpoint}, {time.perf_counter() - start:.0f} s)")

    run(body)


def write_onnx(translate, config, staged: str, opset: int, float16: bool) -> list[str]:
    from cocosnet_tf.export import to_onnx

    proto, used, notes = to_onnx.convert(translate, opset)
    lines = [f"conversion: {note}" for note in notes]
    lines.append(f"opset {used}: passes onnx.checker")
    lines += to_onnx.check(translate, config, proto, config.export.tolerance, "model.onnx")
    to_onnx.onnx.save(proto, os.path.join(staged, layout.MODEL_FILE))
    if float16:
        half = to_onnx.to_float16(proto)
        lines += to_onnx.check(translate, config, half, config.export.fp16_tolerance, "model_fp16.onnx")
        to_onnx.onnx.save(half, os.path.join(staged, layout.FLOAT16_FILE))
    return lines


if __name__ == "__main__":
    main()
