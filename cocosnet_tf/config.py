"""Typed, validated configuration: YAML files in configs/ plus `--set section.key=value`.

Every section is a dataclass; `load_config` checks every key against the dataclass
fields (unknown keys, wrong types and impossible values are `ConfigError`s that name
the key and what is allowed) and `Config.validate` checks the values against each other.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import yaml

from cocosnet_tf.data.kinds import SYNTHETIC_CLASSES, dataset_kind
from cocosnet_tf.fileio import ConfigError, atomic_write_text, require

# The generator's trunk starts at S/32 (five nearest-neighbour upsamplings), so both
# sides of the image must be multiples of 32; 64 is the smallest size the U-Nets and the
# coarsest correspondence level (S/8) still make sense at.
SIZE_MULTIPLE = 32
MIN_SIZE = 64
MAX_SIZE = 2048

# SWD compares 7 x 7 patches of each Laplacian-pyramid level (Karras et al. 2018).
SWD_PATCH_SIZE = 7
# Keys of an older layout, read for one more release with a warning: old key -> new key.
RENAMED_KEYS = {
    "model.inference_chunk": "runtime.chunk",
    "model.recompute": "runtime.recompute",
    "model.recompute_band": "runtime.recompute_band",
    "train.release_memory": "runtime.release_memory",
    "train.deterministic": "runtime.deterministic",
}
# Keys that had one allowed value and are dropped: key -> that value (model.topk: PatchMatch
# keeps the 16 candidates of its 4x4 initialisation window, as the official code).
DROPPED_KEYS = {"model.topk": 16}

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- sections


@dataclass
class SyntheticConfig:
    """The embedded procedural scenes (cocosnet_tf.data.synthetic)."""

    num_samples: int = 2000  # samples per epoch; sample i is a pure function of (seed, i)
    # objects: each object moves on its own, far (occlusions masked); smooth: one gentle
    # warp of the whole scene
    motion: Literal["objects", "smooth"] = "objects"
    min_objects: int = 4
    max_objects: int = 6  # objects motion: at most the 7 classes (one object per class)
    warp_strength: float = 1.0  # scales the exemplar's motion
    cross_scene_probability: float = 0.0  # exemplar from another layout (self_ref 0, no flow)


@dataclass
class SegmentationConfig:
    """Image + label-map folders (ADE20K, COCO-Stuff, Cityscapes or custom layouts)."""

    layout: Literal["custom", "ade20k", "cocostuff", "cityscapes"] = "custom"
    image_dir: str = ""  # relative to data.root; the layout presets fill these in
    label_dir: str = ""
    instance_dir: str = ""  # optional instance-id maps -> boundary channel
    label_offset: int = 0  # added to every label id (ADE20K: -1, so that 0 'other' -> -1)
    dontcare_id: Optional[int] = None  # id (after the offset) that means "no label"


@dataclass
class EdgesConfig:
    """Any folder of photos; the semantic input is their Canny edge map."""

    image_dir: str = ""  # relative to data.root
    heldout_dir: str = ""  # photos of the test phase (held-out report, evaluate); empty: image_dir
    canny_low: int = 50
    canny_high: int = 150
    blur_sigma: float = 1.0  # Gaussian blur before Canny, in pixels of the load size


@dataclass
class DeepFashionConfig:
    """The official DeepFashion(HD) release: img/, pose/ and the official lists."""

    image_list: str = ""  # train.txt / val.txt; empty: every image under img/ with keypoints
    self_pair_list: str = "deepfashion_self_pair.txt"  # relative to data.root
    ref_list: str = ""  # empty: deepfashion_ref.txt (train) / deepfashion_ref_test.txt (test)


@dataclass
class ExemplarConfig:
    """Where each sample's exemplar comes from (not used by the synthetic scenes)."""

    mode: Literal["pair_list", "pseudo", "random"] = "pseudo"
    pair_list: str = ""  # lines "target,ref1,ref2,..." relative to data.root
    pair_choice: Literal["first", "last", "random"] = "first"
    pseudo_probability: float = 0.0  # in pair_list/random mode: chance of a pseudo-pair
    warp_strength: float = 1.0  # geometric pseudo-pairs: scale of the random warp


@dataclass
class DataConfig:
    dataset: Literal["synthetic", "segmentation", "edges", "deepfashion"] = "synthetic"
    root: str = ""
    phase: Literal["train", "test"] = "train"
    crop_size: list[int] = field(default_factory=lambda: [128, 128])  # [H, W] fed to the net
    load_size: Optional[list[int]] = None  # [H, W] after loading; default crop_size
    flip: bool = False
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    label_nc: int = SYNTHETIC_CLASSES  # classes, without the don't-care channel
    contain_dontcare_label: bool = False
    use_instance: bool = False
    seed: int = 0
    shuffle: bool = True  # a seeded permutation of the whole index, new each epoch
    num_parallel_calls: int = -1  # -1: tf.data.AUTOTUNE
    on_bad_sample: Literal["error", "skip"] = "error"
    max_samples: int = 0  # 0: all
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    edges: EdgesConfig = field(default_factory=EdgesConfig)
    deepfashion: DeepFashionConfig = field(default_factory=DeepFashionConfig)
    exemplar: ExemplarConfig = field(default_factory=ExemplarConfig)

    @property
    def semantic_nc(self) -> int:
        """Channels of the semantic map the network reads."""
        return dataset_kind(self).semantic_nc(self)

    @property
    def load_hw(self) -> tuple[int, int]:
        return tuple(self.load_size or self.crop_size)  # type: ignore[return-value]


@dataclass
class Pix2PixHDConfig:
    """pix2pixHD's coarse-to-fine generator and instance-wise feature encoder
    (model.kind pix2pixhd, cocosnet_tf.models.pix2pixhd); the generator's width is
    model.ngf, the discriminator is model.ndf, model.num_discriminators and
    model.discriminator_layers. Its losses are losses.gan, gan_feat, vgg and
    reconstruction (an L1 to the target on every pair); the others are CoCosNet's."""

    local_enhancers: int = 1  # 0, 1 or 2 enhancers G2, each doubling the global generator's size
    n_downsample_global: int = 4  # halvings in G1 (the official 4)
    n_blocks_global: int = 9  # residual blocks in G1 (the official 9)
    n_blocks_local: int = 3  # residual blocks in each enhancer (the official 3)
    # channels of the encoder's per-instance feature vectors fed to G beside the map
    # (the official 3); 0: no encoder, G reads the semantic map alone
    feature_channels: int = 3
    nef: int = 16  # the encoder's width (the official 16)
    n_downsample_encoder: int = 4  # halvings in the encoder (the official 4)


@dataclass
class ModelConfig:
    # which networks: a name of cocosnet_tf.models.registry (the commands refuse others)
    kind: str = "cocosnet"
    nef: int = 32  # domain-alignment U-Net width
    ngf: int = 64  # generator width
    ndf: int = 64  # discriminator width
    spade_hidden: int = 128  # hidden width of every SPADE (generator and U-Nets); official 128
    corr_levels: int = 4  # correspondence levels: S/8 ... S (coarsest level dense)
    temperature: float = 0.01
    # beyond the official code (0 there): the dense level's scores minus locality x the
    # squared distance (in image sides) between a position and the one it attends, so
    # that where the features cannot tell positions apart (a uniform background) the
    # match stays near the identity instead of averaging the whole map
    locality: float = 0.0
    patchmatch_iterations: int = 5
    sampling: Literal["bilinear", "nearest"] = "bilinear"
    gru_hidden: int = 32
    num_discriminators: int = 2
    # the initial weights' xavier_normal gain (official 0.02). Adam moves every weight by
    # about the learning rate per step whatever its size: at a learning rate far above the
    # official 1e-4, 0.02-gain weights change by a large fraction each step and the
    # correspondence's features collapse to uniform attention (docs/correspondence.md)
    init_gain: float = 0.02
    discriminator_layers: int = 4
    pix2pixhd: Pix2PixHDConfig = field(default_factory=Pix2PixHDConfig)


@dataclass
class SeSimConfig:
    """The spatially-correlative loss of F-LSeSim (Zheng et al. 2021), weighted by
    losses.spatial_correlative: the output's self-similarity maps (VGG16 relu3_1 and
    relu4_1) against those of the semantic input or the target (docs/design.md)."""

    patches: int = 256  # query positions per feature map (all of them when the map has fewer)
    window: int = 9  # local variant: the map of a query is its similarity to this odd-sided window
    variant: Literal["local", "global"] = "local"  # global: the similarity to the whole feature map
    distance: Literal["l1", "cosine"] = "cosine"  # between two images' maps at one query
    # share of each map's entries compared: those where the output's map is highest (the
    # official code compares the top quarter); 1: all
    keep: float = 0.25
    # input: the output keeps the semantic input's structure (its label map coloured by a
    # fixed palette); target: the target's
    pair: Literal["input", "target"] = "input"
    # false: FSeSim, the maps of the fixed VGG16 features; true: LSeSim, two 1x1
    # convolutions per layer on them, trained by a patch-wise InfoNCE loss of their own
    learned: bool = False
    temperature: float = 0.07  # LSeSim's InfoNCE
    # LSeSim's positives: the same query in a copy of the image that keeps its structure:
    # brightness, contrast and saturation factors from [1 - jitter, 1 + jitter], a hue
    # shift within +-hue turns, then a Gaussian blur (sigma 0.1 to 2 pixels) with
    # probability blur and greyscale with probability grey
    jitter: float = 0.5
    hue: float = 0.3
    blur: float = 0.5
    grey: float = 0.2


@dataclass
class LossConfig:
    gan: float = 10.0
    gan_feat: float = 10.0
    vgg: float = 10.0
    perceptual: float = 0.001
    contextual: float = 10.0
    warp_self: float = 500.0
    warp_cycle: float = 1.0
    alignment: float = 10.0
    # beyond the official code (0 there): supervise the correspondence with the true flow
    # where a pair has one (synthetic scenes, pseudo-pairs): cross-entropy of the dense
    # level's attention, L1 of every PatchMatch iteration's expected position
    flow: float = 0.0
    flow_gamma: float = 0.8  # RAFT's decay over iterations: iteration t weighs gamma^(T - t)
    # beyond the official code (0 there): L1 between the output and the target on pairs
    # whose exemplar shows the target's content (self-reference pairs), so that the output
    # keeps the exemplar's colours without a pretrained network
    reconstruction: float = 0.0
    # vgg19: the official network, from Keras' cache; vgg16: torchvision's, fetched offline by
    # `python -m cocosnet_tf.weights fetch vgg16` (the same five relu taps, a deviation)
    vgg_network: Literal["vgg19", "vgg16"] = "vgg19"
    vgg_weights: str = ""  # .h5/.weights.h5 file; empty: the network's cache
    # beyond the official CoCosNet code (0 there): the spatially-correlative loss of
    # F-LSeSim, with torchvision's VGG16 (`python -m cocosnet_tf.weights fetch vgg16`)
    spatial_correlative: float = 0.0
    sesim: SeSimConfig = field(default_factory=SeSimConfig)


@dataclass
class Pix2PixHDTrainConfig:
    """pix2pixHD's phases (with local enhancers): G1 alone at the coarse size for
    global_steps, then the outermost enhancer alone, G1 frozen, for fix_global_steps, then
    every stage (cocosnet_tf.models.pix2pixhd.phases)."""

    global_steps: int = 0
    fix_global_steps: int = 0


@dataclass
class TrainConfig:
    batch_size: int = 4  # global batch
    steps: int = 1000
    lr: float = 1e-4
    # both learning rates fall linearly to 0 over the last decay_steps steps (the official
    # niter_decay; all of them when train.steps is fewer); 0: constant
    decay_steps: int = 0
    beta1: float = 0.0
    beta2: float = 0.9
    # the dtype policy; float64 is for numerical checks (tests/test_train_runs.py)
    mixed_precision: Literal["float32", "mixed_float16", "mixed_bfloat16", "float64"] = "float32"
    jit_compile: bool = False
    seed: int = 0  # initial weights, the same on every worker and rerun (the data has data.seed)
    logical_cpus: int = 0  # >1 splits the CPU into logical devices (multi-replica tests)
    checkpoint_every: int = 500
    # the newest checkpoints kept; older ones are deleted (each holds the weights and both
    # optimisers' state, about three times the weights' size)
    keep_checkpoints: int = 3
    log_every: int = 50
    sample_every: int = 500
    pix2pixhd: Pix2PixHDTrainConfig = field(default_factory=Pix2PixHDTrainConfig)


@dataclass
class RuntimeConfig:
    """How the networks run, not what they compute: memory against speed, and determinism.
    None of these shapes a weight, so a run can change them on --resume, translate or export."""

    # positions per chunk of PatchMatch's gradient-free candidate evaluation (in training
    # and inference) and of its final step in inference, and chunk / 16 query rows of the
    # dense coarsest level in inference: memory grows with chunk * K, not N * 3K, nor N^2;
    # 0: no chunks
    chunk: int = 16384
    # gradient checkpointing in training: the full-resolution blocks keep their inputs,
    # not their activations, and run again for the backward pass (docs/memory.md)
    recompute: bool = False
    # with recompute, the local full-resolution blocks (PatchMatch iterations, the
    # U-Nets' SPADE decoder blocks) are recomputed in bands of rows of about this many
    # positions, so that a backward pass holds one band's activations; 0: whole maps
    recompute_band: int = 65536
    # seconds between returns of freed heap memory to the system in training (glibc,
    # cocosnet_tf.memory): a lower peak RSS on a CPU for slower steps; 0: off
    release_memory: float = 0.0
    # deterministic kernels in training (tf.config.experimental.enable_op_determinism, and
    # no Grappler rewrites): two runs of one config end with the same weights, at some
    # cost in speed (docs/reproducibility.md)
    deterministic: bool = False
    # PatchMatch's candidate scores by a compiled op (cocosnet_tf.custom_ops, built on
    # first use with the system's C++ compiler) instead of TensorFlow's gather and
    # einsum: the same values to float rounding, without the gathered candidates; falls
    # back to TensorFlow's ops with a warning when it cannot be built, and under XLA
    compiled_ops: bool = False


@dataclass
class ExportConfig:
    model_name: str = "cocosnet"
    version: int = 1
    onnx_opset: int = 17
    tolerance: float = 1e-4
    fp16_tolerance: float = 5e-2


@dataclass
class EvaluateConfig:
    """python -m cocosnet_tf.evaluate: how many held-out pairs, and the metrics' settings."""

    num_samples: int = 256  # the first N pairs of the held-out split (fewer if it is smaller); 0: all
    batch_size: int = 8
    seed: int = 0  # SWD's patch positions and projection directions
    grid_rows: int = 4  # pairs shown in examples.png
    swd_patches: int = 128  # 7x7 patches per image and pyramid level
    swd_directions: int = 512  # random projections per pyramid level
    swd_min_resolution: int = 16  # the pyramid stops before its shorter side falls below this
    histogram_min_pixels: int = 64  # a class counts in a pair when it covers this many pixels in both images
    # the FID Inception's converted .weights.h5; empty: the weights cache
    # (`python -m cocosnet_tf.weights fetch inception`); none found: no FID
    inception_weights: str = ""
    # also measure the correspondence with the ConvGRU's flow heads zeroed (a second pass)
    refinement_ablation: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def validate(self) -> "Config":
        _check_values(self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike) -> None:
        """Write the resolved configuration (atomically)."""
        atomic_write_text(path, self.to_yaml())


# ----------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or the defaults), apply `section.key=value` overrides, validate."""
    raw: dict = {}
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path!r} does not exist")
        with open(path, encoding="utf-8") as f:
            try:
                raw = yaml.safe_load(f) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"config file {path!r} is not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path!r} must hold a mapping of sections, got {type(raw).__name__}")
        _upgrade_keys(raw, path)
    for item in overrides or []:
        _apply_override(raw, item)
    config = _build(Config, raw, "")
    return config.validate()


def _current_key(key: str, value: Any, source: str) -> str | None:
    """The name `key` has in this layout, with a warning when it is an old one; None for
    a dropped key (ignored)."""
    if key in RENAMED_KEYS:
        log.warning("%s: %s is deprecated, use %s", source, key, RENAMED_KEYS[key])
        return RENAMED_KEYS[key]
    if key in DROPPED_KEYS:
        only = DROPPED_KEYS[key]
        if value != only:
            raise ConfigError(f"{source}: {key}: {value!r} is not allowed; the key is deprecated and can only be "
                              f"{only}: remove it")
        log.warning("%s: %s is deprecated and ignored (it can only be %s), remove it", source, key, only)
        return None
    return key


def _upgrade_keys(raw: dict, source: str) -> None:
    """Move a file's old keys to their places in this layout; an old key beside its new
    one is an error."""
    for old in [*RENAMED_KEYS, *DROPPED_KEYS]:
        section_name, name = old.split(".")
        section = raw.get(section_name)
        if not isinstance(section, dict) or name not in section:
            continue  # absent, or a malformed section that _build names
        value = section.pop(name)
        key = _current_key(old, value, source)
        if key is None:
            continue
        new_section, new_name = key.split(".")
        target = raw.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue  # a malformed section, which _build names
        if new_name in target:
            raise ConfigError(f"{source}: {old} and {key} are one setting; keep only {key}")
        target[new_name] = value


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: the key must be section.key (for example data.crop_size)")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: cannot parse value {text!r}: {err}") from err
    current = _current_key(key, value, "--set")
    if current is None:
        return
    parts = current.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(_join(where, k) for k in unknown)}; "
            f"allowed in {where or 'the top level'}: {', '.join(names)}"
        )
    values = {}
    for name in names:
        if name in raw:
            values[name] = _coerce(hints[name], raw[name], _join(where, name))
    return cls(**values)


def _parse_float(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{key}: expected a number, got {text!r}") from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        (item,) = args
        if item is int and isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]  # a single size means a square
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {item.__name__}, got {value!r}")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            value = _parse_float(value, key)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported config type {hint}")  # a bug in this module


# ----------------------------------------------------------------------------- values


def _check_size(size: list[int], key: str) -> None:
    require(len(size) == 2, key, f"expected [height, width], got {size}")
    for side, name in zip(size, ("height", "width")):
        require(
            MIN_SIZE <= side <= MAX_SIZE and side % SIZE_MULTIPLE == 0,
            key,
            f"{name} {side} cannot be taken by the network; allowed: multiples of "
            f"{SIZE_MULTIPLE} from {MIN_SIZE} to {MAX_SIZE} (the generator starts at 1/{SIZE_MULTIPLE} size)",
        )


def _check_sesim(s: SeSimConfig) -> None:
    require(s.patches >= 1, "losses.sesim.patches", f"must be >= 1, got {s.patches}")
    require(s.window >= 3 and s.window % 2 == 1, "losses.sesim.window",
            f"must be odd and >= 3 (a window centred on its query), got {s.window}")
    require(0 < s.keep <= 1, "losses.sesim.keep", f"must be within (0, 1], got {s.keep}")
    require(s.temperature > 0, "losses.sesim.temperature", f"must be > 0, got {s.temperature}")
    require(0 <= s.jitter < 1, "losses.sesim.jitter", f"must be in [0, 1) (factors stay positive), got {s.jitter}")
    require(0 <= s.hue <= 0.5, "losses.sesim.hue", f"must be in [0, 0.5] turns, got {s.hue}")
    for key in ("blur", "grey"):
        value = getattr(s, key)
        require(0 <= value <= 1, f"losses.sesim.{key}", f"must be a probability, got {value}")


def _check_pix2pixhd(c: Config) -> None:
    p, t = c.model.pix2pixhd, c.train.pix2pixhd
    require(p.local_enhancers in (0, 1, 2), "model.pix2pixhd.local_enhancers",
             f"must be 0, 1 or 2, got {p.local_enhancers}")
    for key in ("n_downsample_global", "n_blocks_global", "n_blocks_local", "feature_channels",
                "n_downsample_encoder"):
        value = getattr(p, key)
        require(value >= 0, f"model.pix2pixhd.{key}", f"must be >= 0, got {value}")
    require(p.nef >= 1, "model.pix2pixhd.nef", f"must be >= 1, got {p.nef}")
    for key in ("global_steps", "fix_global_steps"):
        value = getattr(t, key)
        require(value >= 0, f"train.pix2pixhd.{key}", f"must be >= 0, got {value}")
        require(not value or p.local_enhancers, f"train.pix2pixhd.{key}",
                 f"{value} steps of a phase before the enhancers train needs model.pix2pixhd.local_enhancers >= 1")
    if c.model.kind != "pix2pixhd":
        return
    # each halving exact, and the 7x7 reflection padding (and G1's residual blocks) with
    # enough rows to reflect: the sizes models/pix2pixhd/generator.py checks
    factor = 2 ** (p.local_enhancers + p.n_downsample_global)
    bottleneck = 2 if p.n_blocks_global else 1
    smallest = 2 ** p.local_enhancers * max(4, bottleneck * 2 ** p.n_downsample_global)
    encoder = 2 ** p.n_downsample_encoder
    for side in c.data.crop_size:
        require(side % factor == 0 and side >= smallest, "data.crop_size",
                 f"{c.data.crop_size}: pix2pixHD with {p.local_enhancers} enhancers and {p.n_downsample_global} "
                 f"halvings in G1 needs sides that are multiples of {factor}, at least {smallest}")
        require(not p.feature_channels or (side % encoder == 0 and side >= max(4, encoder)), "data.crop_size",
                 f"{c.data.crop_size}: the feature encoder's {p.n_downsample_encoder} halvings need sides that are "
                 f"multiples of {encoder}, at least {max(4, encoder)}")


def _check_values(c: Config) -> None:
    d = c.data
    _check_size(d.crop_size, "data.crop_size")
    if d.load_size is not None:
        require(len(d.load_size) == 2, "data.load_size", f"expected [height, width], got {d.load_size}")
        require(
            all(MIN_SIZE <= s <= 4096 for s in d.load_size),
            "data.load_size",
            f"{d.load_size}: each side must be between {MIN_SIZE} and 4096",
        )
    require(len(d.scale_range) == 2 and 0 < d.scale_range[0] <= d.scale_range[1],
            "data.scale_range", f"expected [low, high] with 0 < low <= high, got {d.scale_range}")
    load_h, load_w = d.load_hw
    require(
        load_h * d.scale_range[0] >= d.crop_size[0] and load_w * d.scale_range[0] >= d.crop_size[1],
        "data.load_size",
        f"{[load_h, load_w]} scaled by data.scale_range[0]={d.scale_range[0]} is smaller than "
        f"data.crop_size {d.crop_size}; the crop would not fit",
    )
    require(d.label_nc >= 1, "data.label_nc", f"must be at least 1, got {d.label_nc}")
    dataset_kind(d).check(d)
    e = d.exemplar
    require(0.0 <= e.pseudo_probability <= 1.0, "data.exemplar.pseudo_probability",
            f"must be a probability, got {e.pseudo_probability}")
    require(0.0 <= e.warp_strength <= 2.0, "data.exemplar.warp_strength",
            f"must be within [0, 2], got {e.warp_strength}")
    require(d.seed >= 0, "data.seed", f"must be >= 0, got {d.seed}")
    require(c.train.seed >= 0, "train.seed", f"must be >= 0, got {c.train.seed}")
    require(d.num_parallel_calls == -1 or d.num_parallel_calls >= 1, "data.num_parallel_calls",
            f"must be -1 (autotune) or >= 1, got {d.num_parallel_calls}")
    require(d.max_samples >= 0, "data.max_samples", f"must be >= 0, got {d.max_samples}")

    m = c.model
    require(2 <= m.corr_levels <= 4, "model.corr_levels",
            f"{m.corr_levels}: the domain-alignment U-Net has features at S/8, S/4, S/2 and S; allowed 2..4")
    for key in ("nef", "ngf", "ndf", "spade_hidden", "gru_hidden", "num_discriminators", "discriminator_layers"):
        value = getattr(m, key)
        require(value >= 1, f"model.{key}", f"must be >= 1, got {value}")
    require(m.patchmatch_iterations >= 0, "model.patchmatch_iterations",
            f"must be >= 0, got {m.patchmatch_iterations}")
    require(m.temperature > 0, "model.temperature", f"must be > 0, got {m.temperature}")
    require(m.locality >= 0, "model.locality", f"must be >= 0, got {m.locality}")
    require(m.init_gain > 0, "model.init_gain", f"must be > 0, got {m.init_gain}")
    _check_pix2pixhd(c)

    for f in dataclasses.fields(LossConfig):
        value = getattr(c.losses, f.name)
        if isinstance(value, float):
            require(value >= 0, f"losses.{f.name}", f"loss weights must be >= 0, got {value}")
    require(0 < c.losses.flow_gamma <= 1, "losses.flow_gamma", f"must be within (0, 1], got {c.losses.flow_gamma}")
    _check_sesim(c.losses.sesim)

    t = c.train
    for key in ("batch_size", "steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every"):
        value = getattr(t, key)
        require(value >= 1, f"train.{key}", f"must be >= 1, got {value}")
    require(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    require(t.decay_steps >= 0, "train.decay_steps", f"must be >= 0, got {t.decay_steps}")
    for key in ("beta1", "beta2"):
        value = getattr(t, key)
        require(0 <= value < 1, f"train.{key}", f"must be in [0, 1), got {value}")
    require(t.logical_cpus >= 0, "train.logical_cpus", f"must be >= 0, got {t.logical_cpus}")

    r = c.runtime
    require(r.chunk >= 0, "runtime.chunk", f"must be >= 0, got {r.chunk}")
    require(r.recompute_band >= 0, "runtime.recompute_band", f"must be >= 0, got {r.recompute_band}")
    require(r.release_memory >= 0, "runtime.release_memory", f"must be >= 0 seconds, got {r.release_memory}")

    x = c.export
    require(x.version >= 1, "export.version", f"must be >= 1, got {x.version}")
    require(11 <= x.onnx_opset <= 21, "export.onnx_opset", f"allowed 11..21, got {x.onnx_opset}")
    require(x.tolerance > 0 and x.fp16_tolerance > 0, "export.tolerance", "tolerances must be > 0")

    v = c.evaluate
    for key in ("num_samples", "seed"):
        value = getattr(v, key)
        require(value >= 0, f"evaluate.{key}", f"must be >= 0, got {value}")
    for key in ("batch_size", "grid_rows", "swd_patches", "swd_directions", "histogram_min_pixels"):
        value = getattr(v, key)
        require(value >= 1, f"evaluate.{key}", f"must be >= 1, got {value}")
    require(SWD_PATCH_SIZE <= v.swd_min_resolution <= min(d.crop_size), "evaluate.swd_min_resolution",
            f"{v.swd_min_resolution}: allowed from {SWD_PATCH_SIZE} (the patch size) to {min(d.crop_size)} "
            "(the shorter side of data.crop_size)")
