"""pix2pixHD as a model kind (cocosnet_tf.models.kind describes the interface)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cocosnet_tf.models.kind import ModelKind

if TYPE_CHECKING:
    import tensorflow as tf

    from cocosnet_tf.config import Config
    from cocosnet_tf.models.pix2pixhd.model import Pix2PixHD


class Pix2PixHDKind(ModelKind):
    """Translates a semantic map alone; with a feature encoder
    (model.pix2pixhd.feature_channels) also a feature map that sets each region's
    appearance: the run's clusters (python -m cocosnet_tf.pix2pixhd_features) or a
    photo's. No exemplar, no correspondence: the image is its only output."""

    name = "pix2pixhd"
    needs_exemplar = False
    measures_correspondence = False
    discrete_choices = False

    def input_channels(self, config: Config) -> dict[str, int]:
        features = config.model.pix2pixhd.feature_channels
        return {"label": config.data.semantic_nc, **({"features": features} if features else {})}

    def build(self, config: Config) -> Pix2PixHD:
        from cocosnet_tf.models.pix2pixhd.model import Pix2PixHD

        return Pix2PixHD(config, config.data.semantic_nc)

    def inference_networks(self, model: Pix2PixHD) -> dict[str, tf.Module]:
        # the encoder too: translate takes the features of a photo through it
        return {"generator": model.generator, **({"encoder": model.encoder} if model.encoder is not None else {})}

    def inference(self, model: Pix2PixHD) -> Callable[..., dict[str, tf.Tensor]]:
        import tensorflow as tf

        if model.encoder is None:
            def translate(label):
                return {"image": tf.cast(model(label, training=False), tf.float32)}
        else:
            def translate(label, features):
                return {"image": tf.cast(model(label, features, training=False), tf.float32)}
        return translate

    def evaluation(self, model: Pix2PixHD) -> Callable[..., dict]:
        return self.inference(model)

    def run_files(self, model: Pix2PixHD, run_dir: str) -> dict[str, str]:
        """The run's clusters (RUN/pix2pixhd_clusters.npz) when it has them."""
        import os

        from cocosnet_tf.models.pix2pixhd.clusters import load_clusters
        from cocosnet_tf.models.pix2pixhd.run import CLUSTERS_FILE

        if model.encoder is None:
            return {}
        path = os.path.join(run_dir, CLUSTERS_FILE)
        if not os.path.isfile(path):
            model.centres = None
            return {"features": f"the encoder's features of the target itself: {path} does not exist "
                                "(python -m cocosnet_tf.pix2pixhd_features makes it)"}
        model.use_clusters(load_clusters(path))
        return {"features": f"every class's first cluster in {path}; the target is not read"}

    def batch_inputs(self, model: Pix2PixHD, batch: dict) -> list:
        """The label and, with an encoder, a feature map: with a "photo" (translate) its
        features, classes it lacks taking their chosen clusters (zeros without
        clusters); otherwise the chosen clusters (Pix2PixHD.choose_clusters; the first
        of every class unless chosen); a model without clusters (the training
        command's own report, before pix2pixhd_features) takes the target's own
        features. The exemplar of a data batch is never read."""
        label = batch["label"]
        if model.encoder is None:
            return [label]
        clusters = None if model.centres is None else model.cluster_features(label)
        if "photo" in batch:
            return [label, model.photo_features(label, batch["photo"], batch["photo_label"], clusters)]
        return [label, model.encode(batch["image"], label) if clusters is None else clusters]

    def weight_settings(self, config: Config) -> str:
        p = config.model.pix2pixhd
        return (f"model.ngf={config.model.ngf}, pix2pixhd.local_enhancers={p.local_enhancers}, "
                f"n_downsample_global={p.n_downsample_global}, n_blocks_global={p.n_blocks_global}, "
                f"feature_channels={p.feature_channels}, semantic channels={config.data.semantic_nc}")
