"""Which official parameter each of our variables holds, and how its layout changes.

`entries(model)` lists, per official network file ("Corr", "G", "D"), one `Entry` per
variable of ours: the official state-dict key and the layout change. Official keys
that hold nothing of ours are in `IGNORED` with the reason. Layouts:

- conv: PyTorch [out, in, kh, kw] -> Keras [kh, kw, in, out];
- vector: biases and spectral-norm u (`weight_u`, [out]) and v (`weight_v`,
  [in * kh * kw], PyTorch's flattening, which `SpectralConv.weight_matrix` keeps);
- prelu: the single slope of nn.PReLU(), [1] -> Keras' [1, 1, 1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras
import numpy as np

NETWORKS = ("Corr", "G", "D")

# official keys that map onto nothing of ours, and why (regular expressions)
IGNORED = {
    "D": [(r"discriminator_\d+\.dec\..*", "the discriminator's decoder, built but never used by its forward")],
}
# an nn.PReLU used twice in a Sequential is saved under both names; the second is an alias
ALIASES = {"Corr": [(r"(.*)\.model\.3\.weight", r"\1.relu.weight")]}


@dataclass(frozen=True)
class Entry:
    variable: keras.Variable
    key: str
    layout: str  # conv | vector | prelu


def to_ours(value: np.ndarray, layout: str, shape: tuple) -> np.ndarray:
    """An official array in our layout (its shape is checked by the caller)."""
    if layout == "conv":
        value = np.transpose(value, (2, 3, 1, 0)) if value.ndim == 4 else value
    elif layout == "prelu":
        value = value.reshape(shape) if value.size == int(np.prod(shape)) else value
    return value


def _conv(layer, key: str) -> list[Entry]:
    out = [Entry(layer.kernel, f"{key}.weight", "conv")]
    return out + ([Entry(layer.bias, f"{key}.bias", "vector")] if layer.use_bias else [])


def _spectral(wrapper, key: str) -> list[Entry]:
    conv = wrapper.layer
    out = [Entry(conv.kernel, f"{key}.weight_orig", "conv"), Entry(wrapper.u, f"{key}.weight_u", "vector"),
           Entry(wrapper.v, f"{key}.weight_v", "vector")]
    return out + ([Entry(conv.bias, f"{key}.bias", "vector")] if conv.use_bias else [])


def _spade(spade, key: str) -> list[Entry]:
    # mlp_shared is Sequential(ReflectionPad2d, Conv2d, ReLU)
    return (_conv(spade.mlp_shared, f"{key}.mlp_shared.1") + _conv(spade.mlp_gamma, f"{key}.mlp_gamma")
            + _conv(spade.mlp_beta, f"{key}.mlp_beta"))


def _spade_block(block, key: str) -> list[Entry]:
    out = _spectral(block.conv_0, f"{key}.conv_0") + _spectral(block.conv_1, f"{key}.conv_1")
    out += _spade(block.norm_0, f"{key}.norm_0") + _spade(block.norm_1, f"{key}.norm_1")
    if block.learned_shortcut:
        out += _spectral(block.conv_s, f"{key}.conv_s") + _spade(block.norm_s, f"{key}.norm_s")
    return out


def _residual(block, key: str) -> list[Entry]:
    # model is Sequential(pad, conv, IN, PReLU, pad, conv, IN); relu is that PReLU
    return (_conv(block.conv_0, f"{key}.model.1") + _conv(block.conv_1, f"{key}.model.5")
            + [Entry(block.prelu.alpha, f"{key}.relu.weight", "prelu")])


def _unet(unet, key: str) -> list[Entry]:
    out = []
    for name in ("layer1", "layer2", "layer3", "layer4", "layer5"):
        stage = getattr(unet, name)
        if stage.block is None:  # norm_layer(conv) = Sequential(spectral conv, IN)
            out += _spectral(stage.conv, f"{key}.{name}.0")
        else:  # Sequential(norm_layer(conv), ResidualBlock)
            out += _spectral(stage.conv, f"{key}.{name}.0.0") + _residual(stage.block, f"{key}.{name}.1")
    for ours, theirs in (("head_0", "head_0"), ("middle_0", "G_middle_0"), ("middle_1", "G_middle_1"),
                         ("middle_2", "G_middle_2")):
        block = getattr(unet, ours)
        if block is not None:
            out += _spade_block(block, f"{key}.{theirs}")
    return out


def _patch_match(level, key: str) -> list[Entry]:
    """The official code has one PatchMatchGRU for every level; each of our levels
    holds its own copy, so every level reads the same keys."""
    init, update = level.hidden_init, level.update
    # initial_layer is Sequential(conv, IN, ReLU, conv, IN, ReLU)
    out = _conv(init.conv_0, f"{key}.initial_layer.0") + _conv(init.conv_1, f"{key}.initial_layer.3")
    for name in ("convc1", "convc2", "convf1", "convf2", "conv"):
        out += _conv(getattr(update, name), f"{key}.refine_net.encoder.{name}")
    for name in ("convz1", "convr1", "convq1", "convz2", "convr2", "convq2"):
        out += _conv(getattr(update.gru, name), f"{key}.refine_net.gru.{name}")
    return (out + _conv(update.head_1, f"{key}.refine_net.flow_head.conv1")
            + _conv(update.head_2, f"{key}.refine_net.flow_head.conv2"))


def correspondence_entries(net) -> list[Entry]:
    out = _unet(net.unet_label, "adaptive_model_seg") + _unet(net.unet_exemplar, "adaptive_model_img")
    for i, (theta, phi) in enumerate(zip(net.theta, net.phi)):
        out += _conv(theta, f"theta_{i}") + _conv(phi, f"phi_{i}")
    for level in net.patch_match:
        out += _patch_match(level, "patch_match")
    return out


def generator_entries(generator) -> list[Entry]:
    out = _conv(generator.fc, "fc")
    for ours, theirs in (("head_0", "head_0"), ("middle_0", "G_middle_0"), ("middle_1", "G_middle_1"),
                         ("up_0", "up_0"), ("up_1", "up_1"), ("up_2", "up_2"), ("up_3", "up_3")):
        out += _spade_block(getattr(generator, ours), theirs)
    return out + _conv(generator.conv_img, "conv_img")


def discriminator_entries(discriminator) -> list[Entry]:
    """modelN is Sequential(conv, LeakyReLU) at both ends, Sequential(Sequential(spectral
    conv, IN), LeakyReLU) between; the last is Sequential(conv)."""
    out = []
    for i, scale in enumerate(discriminator.discriminators):
        last = len(scale.convs) - 1
        for n, layer in enumerate(scale.convs):
            key = f"discriminator_{i}.model{n}"
            out += _conv(layer, f"{key}.0") if n in (0, last) else _spectral(layer, f"{key}.0.0")
    return out


def network_of(model, network: str):
    """Our network that an official network file holds."""
    return getattr(model, {"Corr": "correspondence", "G": "generator", "D": "discriminator"}[network])


def entries(model, network: str) -> list[Entry]:
    """The entries of one official network file, for a built CoCosNet (or any object
    with built `correspondence`, `generator` and `discriminator` attributes)."""
    make = {"Corr": correspondence_entries, "G": generator_entries, "D": discriminator_entries}[network]
    return make(network_of(model, network))


def ignored_reason(network: str, key: str) -> str | None:
    for pattern, reason in IGNORED.get(network, []):
        if re.fullmatch(pattern, key):
            return reason
    return None


def alias_of(network: str, key: str) -> str | None:
    """The key that `key` repeats (the same parameter saved twice), if it is an alias."""
    for pattern, target in ALIASES.get(network, []):
        if re.fullmatch(pattern, key):
            return re.sub(pattern, target, key)
    return None
