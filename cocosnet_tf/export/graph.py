"""The exported inference graph: the two signatures, built from a restored model of any
kind (cocosnet_tf.models.registry: its inputs and outputs). For CoCosNet:

`serving_default` (float tensors, any batch, any size the network takes):
    label           float32 [B, H, W, C]  the semantic map, values in [0, 1]
    exemplar        float32 [B, H, W, 3]  the exemplar photo in [-1, 1]
    exemplar_label  float32 [B, H, W, C]  the exemplar's semantic map
  -> image          float32 [B, H, W, 3]  in [-1, 1]
     warp0 ...      float32 [B, H/2^(3-l), W/2^(3-l), 3]  the exemplar warped at each
                    correspondence level, coarsest first
H and W must be multiples of 32 (the generator starts at 1/32 size), at least 64.

`translate_encoded` (for REST clients; label-map and edge-map runs only), batch of strings:
    label, exemplar_label  PNG of class ids (label maps: one channel, the dataset's ids,
                           data.segmentation.label_offset and dontcare_id applied) or an
                           edge map (edges runs: white edges on black)
    exemplar               PNG or JPEG photo
  -> image_bytes           PNG of the output, at the export size (data.crop_size); every
                           input is resized to it (ids by nearest neighbour, photos bicubic).

The graph is the kind's `inference` (CoCosNet.call) in inference mode: no discriminator,
no losses, propagation always horizontal first. Inputs are positional in the same order everywhere.
"""

from __future__ import annotations

import tensorflow as tf

from cocosnet_tf.config import Config, DataConfig
from cocosnet_tf.data.kinds import dataset_kind
from cocosnet_tf.models.registry import model_kind


def float_function(model) -> tf.types.experimental.PolymorphicFunction:
    """The network as a tf.function over the float signature (dynamic batch and size):
    the kind's inputs in its order, its named outputs."""
    kind = model_kind(model.config)
    specs = [tf.TensorSpec([None, None, None, channels], tf.float32, name=name)
             for name, channels in kind.input_channels(model.config).items()]
    return tf.function(kind.inference(model), input_signature=specs)


def encoded_reason(config: Config) -> str:
    """Why a run cannot have the encoded signature ('' when it can): it takes a label map,
    an exemplar photo and the exemplar's label map."""
    kind = model_kind(config)
    if list(kind.input_channels(config)) != ["label", "exemplar", "exemplar_label"]:
        return f"a {kind.name} run takes {', '.join(kind.input_channels(config))}, not a label map and an exemplar"
    return dataset_kind(config.data).encoded_reason(config.data)


def _semantic(encoded: tf.Tensor, data: DataConfig) -> tf.Tensor:
    """One PNG -> float32 [h, w, C] at the export size."""
    h, w = data.crop_size
    ids = tf.io.decode_image(encoded, channels=1, expand_animations=False)
    return dataset_kind(data).decode_encoded(_resized(ids, [h, w], "nearest")[..., 0], data)


def _photo(encoded: tf.Tensor, data: DataConfig) -> tf.Tensor:
    h, w = data.crop_size
    rgb = tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.float32)
    return tf.clip_by_value(_resized(rgb, [h, w], "bicubic"), 0.0, 255.0) / 127.5 - 1.0


def _resized(image: tf.Tensor, size: list[int], method: str) -> tf.Tensor:
    """Resized unless it already has `size` (then exactly itself: a resampled exemplar,
    even at its own size, would differ by rounding, which PatchMatch can amplify)."""
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
    return tf.cond(same, lambda: image,
                   lambda: tf.image.resize(image, size, method=method, antialias=method == "bicubic"))


def encoded_function(translate, config: Config):
    """The encoded-image signature over `translate` (the float function)."""
    data = config.data
    strings = tf.TensorSpec([None], tf.string)

    @tf.function(input_signature=[strings, strings, strings])
    def translate_encoded(label, exemplar, exemplar_label):
        def each(fn, batch):
            return tf.map_fn(lambda x: fn(x, data), batch, fn_output_signature=tf.float32)

        out = translate(each(_semantic, label), each(_photo, exemplar), each(_semantic, exemplar_label))
        pixels = tf.cast(tf.round(tf.clip_by_value((out["image"] + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)
        # TF-Serving's REST API base64-encodes outputs whose name ends in _bytes
        return {"image_bytes": tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)}

    return translate_encoded
