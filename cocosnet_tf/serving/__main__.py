"""`python -m cocosnet_tf.serving`: serve an exported model over TF-Serving's REST and gRPC APIs.

    python -m cocosnet_tf.serving --model-dir exports/onnx/cocosnet [--port 8501] [--grpc-port 8500]
    python -m cocosnet_tf.serving --model-dir exports/savedmodel/cocosnet --backend savedmodel

Serves the newest version in BASE/NAME (or --version) as model NAME:
GET /v1/models/NAME, GET /v1/models/NAME/metadata, POST /v1/models/NAME:predict
(`instances` or `inputs`; `signature_name` translate_encoded with a SavedModel), and
GET /healthz; over gRPC (--grpc-port, unless --no-grpc) PredictionService.Predict and
GetModelMetadata, ModelService.GetModelStatus. ONNX exports run in ONNX Runtime (the
CUDA provider with --device cuda or auto when present; the provider in use is printed at
start), SavedModels in TensorFlow. Requests beyond the limits get 400 naming the field
(gRPC INVALID_ARGUMENT), bodies over --max-body-mb 413. A body must arrive within
--read-timeout seconds (else 408) before its request may queue; past --queue admitted
requests (REST and gRPC together), --max-connections open connections or
--body-budget-mb of bodies in memory, 503 with Retry-After (gRPC RESOURCE_EXHAUSTED).
A connection idle for --read-timeout seconds is closed. SIGINT or SIGTERM stops
accepting, closes idle connections, lets the requests in progress finish, and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cocosnet_tf.serving", description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, metavar="BASE/NAME", help="folder of version folders")
    parser.add_argument("--name", default=None, help="model name in URLs (default: the folder's name)")
    parser.add_argument("--version", type=int, default=None, help="version to serve (default: the newest)")
    parser.add_argument("--backend", choices=["auto", "onnx", "savedmodel"], default="auto",
                        help="auto: ONNX Runtime when the version holds model.onnx, else the SavedModel")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto (the default): CUDA when present")
    parser.add_argument("--float16", action="store_true", help="ONNX: serve model_fp16.onnx")
    parser.add_argument("--host", default="127.0.0.1", help="default %(default)s")
    parser.add_argument("--port", type=int, default=8501, help="0: any free port (printed); default %(default)s")
    parser.add_argument("--grpc-port", type=int, default=8500,
                        help="TF-Serving's gRPC API; 0: any free port (printed); default %(default)s")
    parser.add_argument("--no-grpc", action="store_true", help="serve REST only")
    parser.add_argument("--max-batch", type=int, default=4, help="samples per request (default %(default)s)")
    parser.add_argument("--max-body-mb", type=float, default=256.0, help="request body limit (default %(default)g)")
    parser.add_argument("--queue", type=int, default=8,
                        help="requests admitted at once; more get 503 (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="model calls at once (default %(default)s)")
    parser.add_argument("--read-timeout", type=float, default=10.0,
                        help="seconds a client has to send a request's body; also the keep-alive idle timeout "
                             "(default %(default)g)")
    parser.add_argument("--max-connections", type=int, default=64,
                        help="open connections, one thread each (default %(default)s)")
    parser.add_argument("--body-budget-mb", type=float, default=1024.0,
                        help="request bodies in memory at once, over all connections (default %(default)g)")
    args = parser.parse_args(argv)
    for key in ("max_batch", "queue", "workers", "max_connections"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    if not args.read_timeout > 0:
        parser.error("--read-timeout must be positive")
    if not args.no_grpc and args.grpc_port == args.port != 0:
        parser.error(f"--grpc-port {args.grpc_port} is also --port; give them different ports")
    if not 0 < args.max_body_mb <= args.body_budget_mb:
        parser.error(f"--max-body-mb must be positive and within --body-budget-mb ({args.body_budget_mb:g})")

    # after parsing, so that --help and argument errors do not wait for TensorFlow
    from cocosnet_tf.cli import run
    from cocosnet_tf.export.layout import newest_version
    from cocosnet_tf.serving import backends
    from cocosnet_tf.serving.admission import Limits, Model
    from cocosnet_tf.serving.server import make_server

    def body() -> None:
        grpc_server_type = None if args.no_grpc else grpc_server_class()  # refused before the model loads
        model_dir = os.path.normpath(args.model_dir)
        version = (os.path.join(model_dir, str(args.version)) if args.version is not None
                   else newest_version(model_dir))
        if not os.path.isdir(version):
            raise backends.ConfigError(f"--version {args.version}: {version} does not exist")
        backend = backends.load(version, args.backend, args.device, args.float16)
        limits = Limits(max_batch=args.max_batch, max_body_bytes=int(args.max_body_mb * 2**20), queue=args.queue,
                        workers=args.workers, read_timeout=args.read_timeout, max_connections=args.max_connections,
                        body_budget_bytes=int(args.body_budget_mb * 2**20))
        model = Model(args.name or os.path.basename(model_dir), os.path.basename(version), backend, limits)
        try:
            server = make_server(args.host, args.port, model)
        except OSError as err:
            raise backends.ConfigError(f"--host {args.host} --port {args.port}: cannot listen ({err})") from err
        grpc_server = None
        if grpc_server_type:
            try:
                grpc_server = grpc_server_type(args.host, args.grpc_port, model)
            except OSError as err:
                server.server_close()
                raise backends.ConfigError(f"--host {args.host} --grpc-port {args.grpc_port}: cannot listen "
                                           f"({err})") from err
        logging.getLogger("serving").setLevel(logging.INFO)

        def stop(signum, frame):
            print(f"received {signal.Signals(signum).name}; finishing requests in progress", flush=True)
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        host, port = server.server_address[:2]
        grpc_text = f" and gRPC {host}:{grpc_server.port}" if grpc_server else ""
        print(f"serving {model.name} version {model.version} ({backend.description}) on http://{host}:{port}"
              f"{grpc_text} (batch <= {limits.max_batch}, queue {limits.queue}, workers {limits.workers}, "
              f"connections {limits.max_connections}, read timeout {limits.read_timeout:g} s)", flush=True)
        server.serve_forever()
        if grpc_server:
            grpc_server.stop()  # both stop accepting before either waits for its requests
        server.server_close()  # closes idle connections, joins the request threads
        if grpc_server:
            grpc_server.join()
        print("stopped", flush=True)

    run(body)


def grpc_server_class():
    """GrpcServer, or the error naming the package it needs."""
    try:
        from cocosnet_tf.serving.grpc_service import GrpcServer
    except ImportError as err:
        from cocosnet_tf.config import ConfigError

        raise ConfigError(f"gRPC needs the tensorflow-serving-api package ({err}): pip install --no-deps "
                          "'tensorflow-serving-api==2.21.*', or serve REST only with --no-grpc") from err
    return GrpcServer


if __name__ == "__main__":
    main()
