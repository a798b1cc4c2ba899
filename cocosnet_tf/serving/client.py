"""`python -m cocosnet_tf.serving.client`: translate one pair through a server (ours or TF-Serving).

    python -m cocosnet_tf.serving.client --url http://127.0.0.1:8501 --model cocosnet \\
        --config exports/onnx/cocosnet/1/assets.extra/config.yaml \\
        --input labels.png --exemplar photo.png [--exemplar-input photo_labels.png] --out out.png
    python -m cocosnet_tf.serving.client --grpc [--url 127.0.0.1:8500] ...

Inputs are read exactly as python -m cocosnet_tf.translate reads them for the exported
run (--config: the export's assets.extra/config.yaml): label-id maps, keypoint files,
.npy maps, and for edges runs a photo, whose Canny edges become the input (the
exemplar's edges too when --exemplar-input is not given). They are resized to the
export's size and sent as float tensors to the `serving_default` signature (the
`instances` row format, or with --grpc a PredictRequest to TF-Serving's gRPC API), which
every backend and TF-Serving have; the returned image is saved as a PNG. Errors
(unreadable files, a server that refuses or cannot be reached) are one `error:` line,
exit 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import urllib.error
import urllib.request

import numpy as np

# python -m cocosnet_tf.serving's default --host, --port and --grpc-port
DEFAULT_URL, DEFAULT_GRPC = "http://127.0.0.1:8501", "127.0.0.1:8500"


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


def predict_grpc(target: str, model: str, inputs: dict[str, np.ndarray], timeout: float = 600.0) -> dict:
    """The same over gRPC (PredictionService.Predict at HOST:PORT); needs grpcio and the
    tensorflow-serving-api package."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from cocosnet_tf.serving import tensors

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tensors.to_proto(value[None]))
    # no message size limit: the inputs and answer are whole images (gRPC's default is 4 MB)
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                raise ServerError(f"{target}: cannot reach the server ({err.details()})") from None
            raise ServerError(f"{target}: gRPC {err.code().name}: {err.details()}") from None
    try:
        return {k: tensors.to_array(f"outputs.{k}", v)[0] for k, v in answer.outputs.items()}
    except ValueError as err:  # a tensor the server should not have sent
        raise ServerError(f"{target}: the answer's {err}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.serving.client",
                                     description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None,
                        help=f"the server: default {DEFAULT_URL}, or with --grpc HOST:PORT (default {DEFAULT_GRPC})")
    parser.add_argument("--grpc", action="store_true", help="call TF-Serving's gRPC API instead of REST")
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
    url = args.url or (DEFAULT_GRPC if args.grpc else DEFAULT_URL)
    if args.grpc and importlib.util.find_spec("tensorflow_serving") is None:
        parser.error("--grpc needs the tensorflow-serving-api package: "
                     "pip install --no-deps 'tensorflow-serving-api==2.21.*'")
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
        outputs = (predict_grpc if args.grpc else predict)(url, args.model, inputs, args.timeout)
        save_png(args.out, to_uint8(outputs["image"]))
    except (ConfigError, DataError, ServerError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.out} ({outputs['image'].shape[1]}x{outputs['image'].shape[0]}) from {url}")


if __name__ == "__main__":
    main()
