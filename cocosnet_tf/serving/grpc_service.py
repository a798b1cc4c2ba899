"""TF-Serving's gRPC API for the served model (the protos of the tensorflow-serving-api
package): PredictionService.Predict and GetModelMetadata, ModelService.GetModelStatus.

Requests go through the REST side's checks (api.py) and take places in the same queue,
body budget and workers (admission.py). Status codes: INVALID_ARGUMENT for a malformed
request (the message names the field), NOT_FOUND for a model name, version or label not
served, RESOURCE_EXHAUSTED when the queue or the body budget is full, a message is over
the body limit or more than max_connections calls are open, DEADLINE_EXCEEDED when the
request message does not arrive within read_timeout, INTERNAL for a non-finite output;
other methods are UNIMPLEMENTED.

The server runs on an asyncio loop in its own thread, so a client that stalls holds no
thread, only one of the max_connections places. Each method reads its one request
message itself, within read_timeout: gRPC's own unary handling would wait for it without
end. Parsing, checks and model calls of admitted requests run on a pool of `queue`
threads (no more are ever admitted), never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf import json_format, wrappers_pb2
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2

from cocosnet_tf.export.layout import FLOAT_SIGNATURE
from cocosnet_tf.serving import api, tensors
from cocosnet_tf.serving.admission import Busy, Model, OutputError

LOG = logging.getLogger("serving")
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
METADATA_FIELD = "signature_def"  # the one metadata TF-Serving serves
STOP_GRACE = 3600.0  # seconds in-progress calls may take to finish once stopping; each ends by itself


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class Service:
    """The methods, each reading raw request bytes and answering raw response bytes."""

    def __init__(self, model: Model, pool: ThreadPoolExecutor):
        self.model, self.pool = model, pool

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def method(name, parse, answer):
            # stream-unary, which a unary client cannot tell apart, so that the handler reads
            # the request message itself, with a timeout
            async def behaviour(requests, context):
                return await self._call(name, parse, answer, context)
            return {name: grpc.stream_unary_rpc_method_handler(behaviour)}

        return [grpc.method_handlers_generic_handler(PREDICTION_SERVICE, {
                    **method("Predict", predict_pb2.PredictRequest, self._predict),
                    **method("GetModelMetadata", get_model_metadata_pb2.GetModelMetadataRequest, self._metadata)}),
                grpc.method_handlers_generic_handler(MODEL_SERVICE, method(
                    "GetModelStatus", get_model_status_pb2.GetModelStatusRequest, self._status))]

    async def _call(self, name: str, parse, answer, context: grpc.aio.ServicerContext) -> bytes:
        """One call: its message within the read timeout, charged to the body budget while it
        is answered; one log line."""
        m, started, size = self.model, time.perf_counter(), 0
        code, error = grpc.StatusCode.UNKNOWN, "unexpected error"  # until it is answered or refused
        try:
            try:
                raw = await asyncio.wait_for(context.read(), m.limits.read_timeout)
            except asyncio.TimeoutError:
                raise Refused(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"request message: not received within {m.limits.read_timeout:g} s") from None
            if raw is grpc.aio.EOF:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "request message: none sent")
            if not m.bodies.take(len(raw)):
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, m.bodies.busy_message())
            size = len(raw)
            try:
                response = await answer(parse, raw)
            finally:
                m.bodies.give(size)
            code, error = grpc.StatusCode.OK, ""
            return response
        except Refused as err:
            code, error = err.code, str(err)
        except asyncio.CancelledError:
            code, error = grpc.StatusCode.CANCELLED, "cancelled (the client left, or the server stopped)"
            raise
        finally:
            LOG.info("%s gRPC %s %s %d bytes %.0f ms%s", context.peer(), name, code.name, size,
                     (time.perf_counter() - started) * 1e3, f" {error[:200]}" if error else "")
        await context.abort(code, error)

    async def _predict(self, parse, raw: bytes) -> bytes:
        try:
            self.model.enter()
        except Busy as err:
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        job = self.pool.submit(self._admitted, parse, raw)
        # shielded: a call cancelled by its client leaves the queue only when its model call ends
        return await asyncio.shield(asyncio.wrap_future(job))

    def _admitted(self, parse, raw: bytes) -> bytes:
        try:
            return self._run_predict(parse, raw)
        finally:
            self.model.leave()

    def _run_predict(self, parse, raw: bytes) -> bytes:
        m = self.model
        request = self._parse(parse, raw)
        try:
            name, specs = api.signature_inputs(request.model_spec.signature_name, m.backend.signatures,
                                               FLOAT_SIGNATURE)
            names = list(m.backend.signatures[name][1])
            wanted = list(request.output_filter) or names
            unknown = [k for k in wanted if k not in names]
            if unknown:
                raise api.RequestError(f"output_filter: {unknown[0]!r} is not an output of {name} "
                                       f"(outputs: {sorted(names)})")
            arrays = {k: tensors.to_array(f"inputs.{k}", v) for k, v in request.inputs.items()}
            outputs = m.predict(name, api.checked_inputs("inputs", arrays, specs, name, m.limits.max_batch))
        except api.RequestError as err:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        except OutputError as err:
            raise Refused(grpc.StatusCode.INTERNAL, str(err)) from None
        response = predict_pb2.PredictResponse(model_spec=self._spec(name))
        for key in wanted:
            response.outputs[key].CopyFrom(tensors.to_proto(outputs[key]))
        return response.SerializeToString()

    async def _metadata(self, parse, raw: bytes) -> bytes:
        request = self._parse(parse, raw)
        fields = set(request.metadata_field)
        if fields != {METADATA_FIELD}:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"metadata_field: {sorted(fields)}; the metadata served is [{METADATA_FIELD!r}]")
        m = self.model
        signatures = api.metadata(m.name, m.version, m.backend.signatures)["metadata"][METADATA_FIELD]
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=self._spec(""))
        response.metadata[METADATA_FIELD].Pack(json_format.ParseDict(signatures,
                                                                     get_model_metadata_pb2.SignatureDefMap()))
        return response.SerializeToString()

    async def _status(self, parse, raw: bytes) -> bytes:
        self._parse(parse, raw)
        return json_format.ParseDict(api.status(self.model.version),
                                     get_model_status_pb2.GetModelStatusResponse()).SerializeToString()

    def _parse(self, parse, raw: bytes):
        """The request message, once its model_spec names the model served."""
        try:
            request = parse.FromString(raw)
        except DecodeError as err:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a {parse.DESCRIPTOR.name} ({err})") from None
        spec, m = request.model_spec, self.model
        if not spec.name:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "model_spec.name: missing")
        version = str(spec.version.value) if spec.HasField("version") else None
        if spec.name != m.name or version not in (None, m.version) or spec.version_label:
            which = f" version {version}" if version else f" label {spec.version_label}" if spec.version_label else ""
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec.name}{which}")
        return request

    def _spec(self, signature: str) -> model_pb2.ModelSpec:
        return model_pb2.ModelSpec(name=self.model.name, signature_name=signature,
                                   version=wrappers_pb2.Int64Value(value=int(self.model.version)))


class GrpcServer:
    """The gRPC API listening on host:port, on its own thread and event loop; `port` is the
    port bound (port 0: any free one). OSError when it cannot listen."""

    def __init__(self, host: str, port: int, model: Model):
        self.pool = ThreadPoolExecutor(model.limits.queue, thread_name_prefix="grpc")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="grpc", daemon=True)
        self.thread.start()
        self.stopping = None
        try:
            self.server, self.port = asyncio.run_coroutine_threadsafe(self._start(host, port, model),
                                                                      self.loop).result()
        except BaseException:
            self._end_loop()
            raise

    async def _start(self, host: str, port: int, model: Model):
        limits = model.limits
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limits.max_body_bytes),
                                          ("grpc.max_send_message_length", -1)],
                                 maximum_concurrent_rpcs=limits.max_connections)
        server.add_generic_rpc_handlers(Service(model, self.pool).handlers())
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as err:  # grpc's way of saying it cannot bind
            raise OSError(str(err)) from None
        if not bound:
            raise OSError(f"cannot bind {address}")
        await server.start()
        return server, bound

    def stop(self) -> None:
        """Stops accepting calls; the ones in progress go on (join waits for them)."""
        self.stopping = asyncio.run_coroutine_threadsafe(self.server.stop(STOP_GRACE), self.loop)

    def join(self) -> None:
        if self.stopping is None:
            self.stop()
        self.stopping.result()
        self._end_loop()

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.pool.shutdown()
