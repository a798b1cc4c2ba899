"""Numerical parity with the official PyTorch CoCosNet v2.

    python benchmarks/official_parity.py --official PATH [--dtype float64|float32] [--seed 0]

PATH is a checkout of microsoft/CoCosNet-v2 (read, never copied here); PyTorch must be
installed (the `convert` extra). With the official DeepFashionHD options (PONO, PONO_C,
match kernel 1, nef 32, ngf 64, 20 pose channels, 512 x 512), this builds the official
correspondence network, generator and discriminator with their own random
initialisation (init_weights('xavier', 0.02), seeded), saves them as the official
.pth files, converts those with cocosnet_tf.convert_official, runs both implementations
on the same random inputs on the CPU, and prints the largest and mean absolute
difference of every warp and of the generated image (JSON in docs/results/).

float32 runs our converted run directory as translate would. float64 (the default)
sets our networks, built in float64, from the same files through the converter's
reader and mapping. Why float64: the official final index floors row * W + column,
and after the ConvGRU's tiny updates (it keeps its initial weights) those values
sit just beside integers, so float32 rounding differences between two
implementations flip a few top-K choices and indices, and the ConvGRU spreads each flip
to its neighbours over the iterations; in float64 the arithmetic is the same and so
must be every choice.

Adjustments to the official code, at run time and in this process only: its CPU
tensors report their device, so that its `.to(get_device())` works without CUDA; its
random propagation order is fixed to horizontal-first, our inference order; and in
float64, torch's default dtype is float64 and its `.float()` (which turns integer
indices into offsets) gives float64.

    python benchmarks/official_parity.py --official PATH --dump-parameters FILE

writes the names and shapes of the official state dicts instead (the data that
tests/test_convert_official.py converts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
LABEL_NC = 20
CONFIG = os.path.join(ROOT, "configs", "deepfashion_hd_512.yaml")


def official_options(size: int) -> argparse.Namespace:
    """The options of the official DeepFashionHD test command that shape the networks."""
    return argparse.Namespace(
        label_nc=LABEL_NC, semantic_nc=LABEL_NC, contain_dontcare_label=False, output_nc=3, nef=32, ngf=64, ndf=64,
        norm_G="spectralspadesyncbatch3x3", norm_D="spectralinstance", norm_E="spectralinstance", PONO=True,
        PONO_C=True, featEnc_kernel=3, match_kernel=1, temperature=0.01, iteration_count=5, batchSize=1,
        crop_size=size, aspect_ratio=1.0, phase="test", isTrain=False, weight_warp_cycle=0.0,
        weight_novgg_featpair=0.0, netD_subarch="n_layer", num_D=2, n_layers_D=4, no_ganFeat_loss=False)


def official_networks(path: str, size: int, seed: int):
    sys.path.insert(0, path)
    import torch
    from models.networks import patch_match
    from models.networks.correspondence import NoVGGHPMCorrespondence
    from models.networks.discriminator import MultiscaleDiscriminator
    from models.networks.generator import SPADEGenerator

    torch.Tensor.get_device = lambda self: self.device  # .to(-1) fails for CPU tensors
    patch_match.random = types.SimpleNamespace(random=lambda: 0.0)  # < 0.5: horizontal first
    torch.manual_seed(seed)
    opt = official_options(size)
    nets = {}
    for name, cls in (("Corr", NoVGGHPMCorrespondence), ("G", SPADEGenerator), ("D", MultiscaleDiscriminator)):
        net = cls(opt)
        net.init_weights("xavier", 0.02)  # as the official create_network
        nets[name] = net.eval()
    return nets


def dump_parameters(nets, out: str) -> None:
    data = {"_about": "names and shapes of the official CoCosNet v2 state dicts for DeepFashionHD (pose maps of "
                      f"{LABEL_NC} channels, nef 32, ngf 64, ndf 64, two 4-layer discriminators), written by "
                      "benchmarks/official_parity.py --dump-parameters"}
    for name, net in nets.items():
        data[name] = {k: list(v.shape) for k, v in net.state_dict().items()}
    def value(key, shapes):  # one parameter per line
        if key == "_about":
            return json.dumps(shapes)
        return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items()) + "\n}"

    with open(out, "w") as f:
        f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {value(k, v)}" for k, v in data.items()) + "\n}\n")
    print(f"wrote {out}: " + ", ".join(f"{k} {len(v)} keys" for k, v in data.items() if k != "_about"))


def inputs(size: int, seed: int) -> dict[str, np.ndarray]:
    """NHWC float32: a pose-like label (smooth blobs), an exemplar photo-like image."""
    rng = np.random.default_rng(seed)

    def smooth(channels, low, high):
        coarse = rng.uniform(low, high, size=(size // 16, size // 16, channels)).astype(np.float32)
        fine = np.repeat(np.repeat(coarse, 16, 0), 16, 1)
        return fine + rng.normal(0, 0.05 * (high - low), fine.shape).astype(np.float32)

    return {"label": np.clip(smooth(LABEL_NC, 0, 1), 0, 1)[None], "exemplar": np.clip(smooth(3, -1, 1), -1, 1)[None],
            "exemplar_label": np.clip(smooth(LABEL_NC, 0, 1), 0, 1)[None]}


@contextlib.contextmanager
def official_float64(torch):
    """The official code in float64: float64 default dtype, and its `.float()` (which
    turns integer indices into floats for offsets) gives float64 too."""
    default, to_float = torch.get_default_dtype(), torch.Tensor.float
    torch.set_default_dtype(torch.float64)
    torch.Tensor.float = lambda self, *args, **kwargs: self.double()
    try:
        yield
    finally:
        torch.set_default_dtype(default)
        torch.Tensor.float = to_float


def run_official(nets, x, dtype: str):
    import torch

    def nchw(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)).astype(dtype))

    precision = official_float64(torch) if dtype == "float64" else contextlib.nullcontext()
    with torch.no_grad(), precision:
        corr_net, generator = (nets["Corr"].double(), nets["G"].double()) if dtype == "float64" else (
            nets["Corr"], nets["G"])
        corr = corr_net(nchw(x["exemplar"]), nchw(x["exemplar"]), nchw(x["label"]), nchw(x["exemplar_label"]))
        image = generator(nchw(x["label"]), warp_out=corr["warp_out"])
    warps = [w.numpy().transpose(0, 2, 3, 1) for w in corr["warp_out"]]
    return {"warps": warps, "image": image.numpy().transpose(0, 2, 3, 1)}


def float64_networks(config, checkpoint_dir: str):
    """Our correspondence network and generator in float64, set from the official files
    by the converter's reader and mapping (a run directory's checkpoint is float32)."""
    import keras
    import tensorflow as tf

    from cocosnet_tf.models.cocosnet.correspondence.network import CorrespondenceNet
    from cocosnet_tf.models.cocosnet.generator import Generator
    from cocosnet_tf.official import assign, pth

    keras.mixed_precision.set_dtype_policy("float64")
    nets = types.SimpleNamespace(correspondence=CorrespondenceNet.from_config_object(config.model, LABEL_NC),
                                 generator=Generator(LABEL_NC, corr_levels=config.model.corr_levels,
                                                     ngf=config.model.ngf))
    label, image = tf.zeros([1, 64, 64, LABEL_NC], tf.float64), tf.zeros([1, 64, 64, 3], tf.float64)
    nets.generator(label, nets.correspondence(label, image, label)["warps"])
    states = {name: state for name, (_, state) in pth.read_networks(checkpoint_dir, "latest", ("Corr", "G")).items()}
    assign.assign(nets, states)
    return nets


def run_ours(run_dir: str, checkpoint_dir: str, x, dtype: str):
    import tensorflow as tf

    from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config

    config = load_run_config(run_dir, [])
    if dtype == "float64":
        nets = float64_networks(config, checkpoint_dir)
    else:
        nets = load_model(config, find_checkpoint(run_dir, None))
    args = [tf.constant(x[k].astype(dtype)) for k in ("label", "exemplar", "exemplar_label")]
    start = time.time()
    out = nets.correspondence(*args)
    image = nets.generator(args[0], out["warps"])
    return {"warps": [w.numpy() for w in out["warps"]], "image": image.numpy(), "seconds": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, help="checkout of microsoft/CoCosNet-v2")
    parser.add_argument("--size", type=int, default=512, help="image size (the official generator needs 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                        help="precision of both implementations (docs/official_checkpoints.md: why float64)")
    parser.add_argument("--dump-parameters", metavar="FILE", help="write the official names and shapes and stop")
    parser.add_argument("--out", default=None, help="JSON report (default docs/results/official_parity_DTYPE.json)")
    args = parser.parse_args()
    nets = official_networks(os.path.abspath(args.official), args.size, args.seed)
    if args.dump_parameters:
        dump_parameters(nets, args.dump_parameters)
        return
    import torch

    from cocosnet_tf.convert_official import convert

    x = inputs(args.size, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in nets.items():
            torch.save(net.state_dict(), os.path.join(tmp, f"latest_net_{name}.pth"))
        run_dir = os.path.join(tmp, "run")
        convert(tmp, CONFIG, [], run_dir)
        start = time.time()
        theirs = run_official(nets, x, args.dtype)
        official_s = time.time() - start
        ours = run_ours(run_dir, tmp, x, args.dtype)
        ours_s = ours["seconds"]
    rows = []
    for level, (a, b) in enumerate(zip(ours["warps"], theirs["warps"])):
        rows.append((f"warp{level} {a.shape[1]}x{a.shape[2]}", a, b))
    rows.append(("image", ours["image"], theirs["image"]))
    report = {"size": args.size, "seed": args.seed, "dtype": args.dtype, "official_s": round(official_s, 1), "ours_s": round(ours_s, 1),
              "outputs": {}}
    print(f"{args.dtype}: official forward {official_s:.1f} s, ours {ours_s:.1f} s (eager, CPU)")
    print("| output | max abs diff | mean abs diff |\n|---|---|---|")
    for name, a, b in rows:
        diff = np.abs(a.astype(np.float64) - b)
        report["outputs"][name] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
        print(f"| {name} | {diff.max():.2e} | {diff.mean():.2e} |")
    out = args.out or os.path.join(ROOT, "docs", "results", f"official_parity_{args.dtype}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
