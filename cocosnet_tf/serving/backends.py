"""What the server runs: an exported version (BASE/NAME/VERSION) in ONNX Runtime or TensorFlow.

Both backends expose the same thing: `signatures` (name -> input and output specs, as
TF-Serving's metadata describes them) and `predict(signature, arrays)`. An ONNX export
has the float signature only; a SavedModel also has the encoded-image one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from cocosnet_tf.config import Config, ConfigError, load_config
from cocosnet_tf.export.layout import CONFIG_FILE, FLOAT16_FILE, FLOAT_SIGNATURE, MODEL_FILE

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@dataclass(frozen=True)
class Spec:
    dtype: str  # numpy name: float32, object (bytes)
    shape: tuple  # -1 where dynamic


Signature = tuple[dict[str, Spec], dict[str, Spec]]  # inputs, outputs


def exported_config(version: str) -> Config:
    path = os.path.join(version, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{path} does not exist; {version} is not a version written by python -m cocosnet_tf.export")
    return load_config(path, [])


class OnnxBackend:
    def __init__(self, version: str, device: str, float16: bool = False):
        import onnxruntime

        path = os.path.join(version, FLOAT16_FILE if float16 else MODEL_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"{path} does not exist" + (" (export with --float16)" if float16 else ""))
        available = onnxruntime.get_available_providers()
        wanted = {"cpu": [CPU], "cuda": [CUDA, CPU], "auto": [CUDA, CPU] if CUDA in available else [CPU]}[device]
        if wanted[0] not in available:
            raise ConfigError(f"--device {device}: ONNX Runtime has no {wanted[0]} here (available: "
                              f"{', '.join(available)}); install onnxruntime-gpu with CUDA, or use --device cpu")
        self.session = onnxruntime.InferenceSession(path, providers=wanted)
        used = self.session.get_providers()
        if used[0] != wanted[0]:  # ONNX Runtime falls back silently when CUDA cannot start
            raise ConfigError(f"--device {device}: {wanted[0]} did not start (running on {used[0]}); "
                              "check the CUDA and cuDNN libraries")
        self.description = f"onnxruntime {onnxruntime.__version__} {path} on {used[0]}"

        def specs(nodes):
            return {n.name: Spec("float32", tuple(d if isinstance(d, int) else -1 for d in n.shape)) for n in nodes}

        self.signatures: dict[str, Signature] = {
            FLOAT_SIGNATURE: (specs(self.session.get_inputs()), specs(self.session.get_outputs()))}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def predict(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, arrays)))


class SavedModelBackend:
    def __init__(self, version: str):
        import tensorflow as tf

        if not os.path.isfile(os.path.join(version, "saved_model.pb")):
            raise ConfigError(f"{version}: no saved_model.pb; write one with python -m cocosnet_tf.export savedmodel")
        self.tf = tf
        self.model = tf.saved_model.load(version)
        self.description = f"tensorflow {tf.__version__} SavedModel {version}"

        def specs(structure):
            return {name: Spec("object" if s.dtype == tf.string else s.dtype.name,
                               tuple(-1 if d is None else d for d in s.shape)) for name, s in structure.items()}

        self.signatures = {name: (specs(fn.structured_input_signature[1]), specs(fn.structured_outputs))
                           for name, fn in self.model.signatures.items()}

    def predict(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fn = self.model.signatures[signature]
        return {k: v.numpy() for k, v in fn(**{k: self.tf.constant(v) for k, v in arrays.items()}).items()}


def load(version: str, backend: str, device: str, float16: bool):
    """The backend for `version`: 'onnx', 'savedmodel', or 'auto' (what the folder holds)."""
    if backend == "auto":
        backend = "onnx" if os.path.isfile(os.path.join(version, MODEL_FILE)) else "savedmodel"
    if backend == "onnx":
        return OnnxBackend(version, device, float16)
    if device == "cuda":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            raise ConfigError("--device cuda: TensorFlow sees no GPU here")
    return SavedModelBackend(version)
