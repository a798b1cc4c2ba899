"""CoCosNet v2 exemplar-based image translation in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"

try:
    import tensorflow as _tf  # noqa: F401  (checked here so every entry point fails the same way)
except ImportError as err:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "cocosnet_tf needs TensorFlow 2.21, which comes through an extra: "
        "pip install 'cocosnet-tf[cpu]' on machines without a GPU, or "
        "pip install 'cocosnet-tf[gpu]' for NVIDIA GPUs (never both). "
        f"Original error: {err}"
    ) from err
