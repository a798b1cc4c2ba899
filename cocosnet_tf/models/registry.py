"""The model kinds by their `model.kind` name: the one place the commands (train,
translate, evaluate, export) learn which networks a config means. Adding a kind is a
subpackage of cocosnet_tf.models with a ModelKind (cocosnet_tf.models.kind describes its
interface) and one entry here.

Importing this module does not load TensorFlow.
"""

from __future__ import annotations

from cocosnet_tf.config import Config, ConfigError
from cocosnet_tf.models.cocosnet.kind import CoCosNetKind
from cocosnet_tf.models.kind import ModelKind
from cocosnet_tf.models.pix2pixhd.kind import Pix2PixHDKind

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (CoCosNetKind(), Pix2PixHDKind())}


def model_kind(config: Config) -> ModelKind:
    """The kind `config.model.kind` names; a ConfigError naming the known ones otherwise."""
    name = config.model.kind
    if name not in KINDS:
        raise ConfigError(f"model.kind: {name!r} is not a model kind; known: {', '.join(sorted(KINDS))}")
    return KINDS[name]
