"""What a model kind gives the commands (the interface cocosnet_tf.models.registry
chooses among by `model.kind`).

A kind is one object. Importing its module must not load TensorFlow (the commands check
the config and their inputs first); its methods import the networks when called.

    name: str                     the `model.kind` value
    needs_exemplar: bool          whether inference takes an exemplar photo
    measures_correspondence: bool whether evaluation gives warps and the correspondence's
                                  positions to measure (CoCosNet) or the image alone
    discrete_choices: bool        whether inference chooses discretely (PatchMatch's top K),
                                  so that an ONNX export can match it only where no choice
                                  changes the output (export/verify.py); else everywhere
    input_channels(config)        -> {input name: channels}, in the order `inference`'s
                                  function and the exported signature take them
                                  (float32 [B, H, W, C])
    build(config)                 -> the trainable keras.Model, its variables not yet made
    inference_networks(model)     -> {attribute name: network} that translate, evaluate
                                  and export restore from a checkpoint and export
    inference(model)              -> a function of the inputs (parameters named and ordered
                                  as input_channels) that runs `model` in inference mode
                                  -> {"image": [B, H, W, 3] in [-1, 1], the kind's other
                                  pictures by name}; the export traces it as it is
    evaluation(model)             -> like inference's function, with what evaluate measures
                                  beside the image (CoCosNet: "warps", coarsest first, and
                                  the correspondence's "positions", "weights", "dense_best")
    weight_settings(config)       -> the settings that shape the weights, in words, for the
                                  error of a checkpoint that does not fit
    run_files(model, run_dir)     -> reads what the run holds besides its checkpoint that
                                  the kind's inputs use (pix2pixHD: its feature clusters);
                                  returns notes on them for evaluate's report ({} by default)
    batch_inputs(model, batch)    -> the inputs of inference's function for a batch of the
                                  data pipeline, in order (by default its entries of those
                                  names; pix2pixHD makes its feature map)

The trainable model of every kind has `config` (the Config it was made from),
`build_inference(height, width)` (the inference networks' variables),
`build_all(height, width)` (every variable), `compile()` (the default optimisers) and,
after it, `g_optimizer` and `d_optimizer` (the generator side's and the discriminator's,
checkpointed by the training command under those names) and `train_step(batch)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from cocosnet_tf.config import Config


class ModelKind:
    name: str
    needs_exemplar: bool
    measures_correspondence: bool
    discrete_choices: bool

    def input_channels(self, config: Config) -> dict[str, int]:
        raise NotImplementedError

    def build(self, config: Config) -> keras.Model:
        raise NotImplementedError

    def inference_networks(self, model: keras.Model) -> dict[str, tf.Module]:
        raise NotImplementedError

    def inference(self, model: keras.Model) -> Callable[..., dict[str, tf.Tensor]]:
        raise NotImplementedError

    def evaluation(self, model: keras.Model) -> Callable[..., dict]:
        raise NotImplementedError

    def weight_settings(self, config: Config) -> str:
        raise NotImplementedError

    def batch_inputs(self, model: keras.Model, batch: dict) -> list:
        return [batch[name] for name in self.input_channels(model.config)]

    def run_files(self, model: keras.Model, run_dir: str) -> dict[str, str]:
        return {}
