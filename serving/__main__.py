"""`python -m serving`: serve an exported model over TF-Serving's REST API.

    python -m serving --model-dir exports/onnx/cocosnet [--port 8501] [--device cpu|cuda|auto]
    python -m serving --model-dir exports/savedmodel/cocosnet --backend savedmodel

Serves the newest version in BASE/NAME (or --version) as model NAME:
GET /v1/models/NAME, GET /v1/models/NAME/metadata, POST /v1/models/NAME:predict
(`instances` or `inputs`; `signature_name` translate_encoded with a SavedModel), and
GET /healthz. ONNX exports run in ONNX Runtime (the CUDA provider with --device cuda or
auto when present; the provider in use is printed at start), SavedModels in TensorFlow.
Requests beyond the limits get 400 naming the field; past --queue admitted requests,
503. SIGINT or SIGTERM stops accepting, lets the requests in progress finish, and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from cocosnet_tf.cli import run
from export.layout import newest_version
from serving import backends
from serving.server import Limits, Model, make_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, metavar="BASE/NAME", help="folder of version folders")
    parser.add_argument("--name", default=None, help="model name in URLs (default: the folder's name)")
    parser.add_argument("--version", type=int, default=None, help="version to serve (default: the newest)")
    parser.add_argument("--backend", choices=["auto", "onnx", "savedmodel"], default="auto",
                        help="auto: ONNX Runtime when the version holds model.onnx, else the SavedModel")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--float16", action="store_true", help="ONNX: serve model_fp16.onnx")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501, help="0: any free port (printed)")
    parser.add_argument("--max-batch", type=int, default=4, help="samples per request")
    parser.add_argument("--max-body-mb", type=float, default=256.0, help="request body limit")
    parser.add_argument("--queue", type=int, default=8, help="requests admitted at once; more get 503")
    parser.add_argument("--workers", type=int, default=1, help="model calls at once")
    args = parser.parse_args(argv)
    for key in ("max_batch", "queue", "workers"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")

    def body() -> None:
        model_dir = os.path.normpath(args.model_dir)
        version = (os.path.join(model_dir, str(args.version)) if args.version is not None
                   else newest_version(model_dir))
        if not os.path.isdir(version):
            raise backends.ConfigError(f"--version {args.version}: {version} does not exist")
        backend = backends.load(version, args.backend, args.device, args.float16)
        limits = Limits(args.max_batch, int(args.max_body_mb * 2**20), args.queue, args.workers)
        model = Model(args.name or os.path.basename(model_dir), os.path.basename(version), backend, limits)
        try:
            server = make_server(args.host, args.port, model)
        except OSError as err:
            raise backends.ConfigError(f"--host {args.host} --port {args.port}: cannot listen ({err})") from err
        logging.getLogger("serving").setLevel(logging.INFO)

        def stop(signum, frame):
            print(f"received {signal.Signals(signum).name}; finishing requests in progress", flush=True)
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        host, port = server.server_address[:2]
        print(f"serving {model.name} version {model.version} ({backend.description}) on http://{host}:{port} "
              f"(batch <= {limits.max_batch}, queue {limits.queue}, workers {limits.workers})", flush=True)
        server.serve_forever()
        server.server_close()  # joins the request threads
        print("stopped", flush=True)

    run(body)


if __name__ == "__main__":
    main()
