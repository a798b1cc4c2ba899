"""CoCosNet v2 exemplar-based image translation in TensorFlow 2 / Keras 3."""

import importlib.util

__version__ = "0.1.0"

TENSORFLOW_MISSING = (
    "cocosnet_tf needs TensorFlow 2.21, which comes through an extra: "
    "pip install 'cocosnet-tf[cpu]' on machines without a GPU, or "
    "pip install 'cocosnet-tf[gpu]' for NVIDIA GPUs (never both)."
)

# looked up, not imported (that takes seconds): every entry point fails the same way
# without it, and commands still parse their arguments before TensorFlow loads
if importlib.util.find_spec("tensorflow") is None:
    raise ImportError(TENSORFLOW_MISSING)
