"""CoCosNet v2 as a model kind (cocosnet_tf.models.kind describes the interface)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cocosnet_tf.models.kind import ModelKind

if TYPE_CHECKING:
    import tensorflow as tf

    from cocosnet_tf.config import Config
    from cocosnet_tf.models.cocosnet.model import CoCosNet


class CoCosNetKind(ModelKind):
    """Translates a semantic map after an exemplar photo and its semantic map; besides
    the image it gives the exemplar warped at each correspondence level (warp0 the
    coarsest)."""

    name = "cocosnet"
    needs_exemplar = True
    measures_correspondence = True
    discrete_choices = True

    def input_channels(self, config: Config) -> dict[str, int]:
        nc = config.data.semantic_nc
        return {"label": nc, "exemplar": 3, "exemplar_label": nc}

    def build(self, config: Config) -> CoCosNet:
        from cocosnet_tf.models.cocosnet.model import CoCosNet

        return CoCosNet(config, config.data.semantic_nc)

    def inference_networks(self, model: CoCosNet) -> dict[str, tf.Module]:
        return {"correspondence": model.correspondence, "generator": model.generator}

    def inference(self, model: CoCosNet) -> Callable[..., dict[str, tf.Tensor]]:
        def translate(label, exemplar, exemplar_label):
            out = model(label, exemplar, exemplar_label, training=False)
            return {"image": out["image"], **{f"warp{level}": warp for level, warp in enumerate(out["warps"])}}

        return translate

    def evaluation(self, model: CoCosNet) -> Callable[..., dict]:
        import tensorflow as tf

        def measured(label, exemplar, exemplar_label):
            # the correspondence's positions too, which CoCosNet.call does not return
            out = model.correspondence(label, exemplar, exemplar_label)
            image = tf.cast(model.generator(label, out["warps"]), tf.float32)
            return {"image": image, **{k: out[k] for k in ("warps", "positions", "weights", "dense_best")}}

        return measured

    def weight_settings(self, config: Config) -> str:
        m = config.model
        return (f"model.nef={m.nef}, ngf={m.ngf}, corr_levels={m.corr_levels}, "
                f"semantic channels={config.data.semantic_nc}")
