"""`python -m cocosnet_tf.serving.client`: translate one pair through a server (ours or TF-Serving).

    python -m cocosnet_tf.serving.client --url http://127.0.0.1:8501 --model cocosnet \\
        --config exports/onnx/cocosnet/1/assets.extra/config.yaml \\
        --input labels.png --exemplar photo.png [--exemplar-input photo_labels.png] --out out.png

Inputs are read exactly as python -m cocosnet_tf.translate reads them for the exported
run (--config: the export's assets.extra/config.yaml): label-id maps, keypoint files,
.npy maps, and for edges runs a photo, whose Canny edges become the input (the
exemplar's edges too when --exemplar-input is not given). They are resized to the
export's size and sent as float tensors to the `serving_default` signature (the
`instances` row format), which every backend and TF-Serving have; the returned image is
saved as a PNG. Errors (unreadable files, a server that refuses or cannot be reached)
are one `error:` line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

import numpy as np

DEFAULT_URL = "http://127.0.0.1:8501"  # python -m cocosnet_tf.serving's default --host and --port


class ServerError(Exception):
    """The server refused the request, or could not be reached."""


def predict(url: str, model: str, inputs: dict[str, np.ndarray], timeout: float = 600.0) -> dict:
    """POST one sample to MODEL:predict; the first prediction (output name -> array). Needs
    only numpy and the standard library, to call from code that prepared its own arrays."""
    body = json.dumps({"instances": [{k: v.tolist() for k, v in inputs.items()}]}).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/models/{model}:predict", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise ServerError(f"{url}: HTTP {err.code}: {detail}") from err
    except (urllib.error.URLError, OSError) as err:
        raise ServerError(f"{url}: cannot reach the server ({getattr(err, 'reason', err)})") from err
    return {k: np.asarray(v, np.float32) for k, v in answer["predictions"][0].items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.serving.client",
                                     description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help="the server (default %(default)s)")
    parser.add_argument("--model", default="cocosnet", help="model name in the server's URLs (default %(default)s)")
    parser.add_argument("--config", required=True, help="the export's assets.extra/config.yaml")
    parser.add_argument("--input", required=True, help="semantic input (label ids, keypoints, .npy, or a photo "
                                                       "for edges runs)")
    parser.add_argument("--exemplar", required=True, help="exemplar photo")
    parser.add_argument("--exemplar-input", default=None, help="the exemplar's semantic map")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the answer (default %(default)g)")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out}: the output is a PNG; name it .png")

    # the inputs are read by the translate command's own code, imported after parsing so
    # that --help and argument errors are immediate; not through cocosnet_tf.cli.run,
    # which loads TensorFlow for the commands that run the network
    from cocosnet_tf.config import ConfigError, load_config
    from cocosnet_tf.fileio import DataError, save_png
    from cocosnet_tf.translate import Job, prepare
    from cocosnet_tf.visualize import to_uint8

    try:
        config = load_config(args.config, [])
        inputs = prepare(Job(args.input, args.exemplar, args.exemplar_input, args.out), config)
        outputs = predict(args.url, args.model, inputs, args.timeout)
        save_png(args.out, to_uint8(outputs["image"]))
    except (ConfigError, DataError, ServerError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.out} ({outputs['image'].shape[1]}x{outputs['image'].shape[0]}) from {args.url}")


if __name__ == "__main__":
    main()
