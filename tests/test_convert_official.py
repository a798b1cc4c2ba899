"""The converter of official CoCosNet v2 checkpoints (cocosnet_tf.official, convert_official).

The official parameter names and shapes are data (tests/data, written by
benchmarks/official_parity.py --dump-parameters from microsoft/CoCosNet-v2); the values
are random. No PyTorch code of the official repository is needed; the .pth tests need
PyTorch itself and skip without it."""

import io
import json
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from cocosnet_tf.config import load_config
from cocosnet_tf.convert_official import build, main as convert_main
from cocosnet_tf.official import assign, names
from cocosnet_tf.runs import find_checkpoint, load_model, load_run_config
from conftest import REPO, run_main

PARAMETERS = os.path.join(REPO, "tests", "data", "official_deepfashionhd_parameters.json")
CONFIG = os.path.join(REPO, "configs", "deepfashion_hd_512.yaml")


def official_shapes() -> dict:
    with open(PARAMETERS) as f:
        data = json.load(f)
    return {k: v for k, v in data.items() if k != "_about"}


def random_states(seed=0) -> dict:
    """Official state dicts of random values; a PReLU saved twice holds one value."""
    rng = np.random.default_rng(seed)
    states = {}
    for network, shapes in official_shapes().items():
        state = {k: rng.normal(size=shape).astype(np.float32) for k, shape in shapes.items()}
        for key in state:
            if key.endswith(".model.3.weight"):
                state[key] = state[key.replace(".model.3.weight", ".relu.weight")]
        states[network] = state
    return states


@pytest.fixture(scope="module")
def model():
    return build(load_config(CONFIG, ["model.sampling=nearest"]))


@pytest.fixture(scope="module")
def converted(model):
    states = random_states()
    report = assign.assign(model, states)
    return model, states, report


def variable(model, path_part):
    found = [v for v in model.variables if path_part in v.path]
    assert len(found) == 1, [v.path for v in found]
    return found[0]


def test_every_official_parameter_is_used_and_every_variable_set(converted):
    model, states, report = converted
    assert report["assigned"] == {"Corr": 312, "G": 171, "D": 26}  # Corr: 320 less 8 PReLU aliases
    assert len(report["aliases"]["Corr"]) == 8 and len(report["ignored"]["D"]) == 22  # the unused decoders
    # every variable holds one of the official arrays, in some layout: none kept its initial value
    sources = set()
    for state in states.values():
        for value in state.values():
            sources.add(value.tobytes())
            if value.ndim == 4:
                sources.add(np.transpose(value, (2, 3, 1, 0)).tobytes())
    for net in (model.correspondence, model.generator, model.discriminator):
        for v in net.variables:
            assert v.numpy().tobytes() in sources, v.path


def torch_conv(x_nchw, weight, bias, stride=1, padding=(0, 0)):
    """Cross-correlation as nn.Conv2d computes it, in NumPy (float64)."""
    ph, pw = padding
    x = np.pad(x_nchw.astype(np.float64), [(0, 0), (0, 0), (ph, ph), (pw, pw)])
    out_c, _, kh, kw = weight.shape
    b, _, h, w = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((b, out_c, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("bchw,oc->bohw", patch, weight[:, :, i, j].astype(np.float64))
    return out + (0 if bias is None else bias.reshape(1, -1, 1, 1))


def nhwc(x):
    return tf.constant(np.transpose(x, (0, 2, 3, 1)).astype(np.float32))


def test_a_converted_convolution_computes_the_pytorch_one(converted):
    model, states, _ = converted
    rng = np.random.default_rng(1)
    # the generator's first conv: 3x3, zero padding 1, bias
    x = rng.normal(size=(1, 32, 6, 5))
    ours = model.generator.fc(nhwc(x)).numpy()
    g = states["G"]
    expected = torch_conv(x, g["fc.weight"], g["fc.bias"], padding=(1, 1))
    np.testing.assert_allclose(ours, np.transpose(expected, (0, 2, 3, 1)), rtol=1e-4, atol=1e-3)
    # a 1x5 ConvGRU gate: kernel height and width must not be swapped
    c = states["Corr"]
    x = rng.normal(size=(1, 32 + 64, 4, 7))
    gate = model.correspondence.patch_match[1].update.gru.convz1
    expected = torch_conv(x, c["patch_match.refine_net.gru.convz1.weight"],
                          c["patch_match.refine_net.gru.convz1.bias"], padding=(0, 2))
    np.testing.assert_allclose(gate(nhwc(x)).numpy(), np.transpose(expected, (0, 2, 3, 1)), rtol=1e-4, atol=1e-3)


def test_a_converted_spectral_convolution_divides_by_the_official_sigma(converted):
    model, states, _ = converted
    c = states["Corr"]
    key = "adaptive_model_seg.layer3.0.0"  # stride 2, spectral, no bias
    weight, u, v = c[f"{key}.weight_orig"], c[f"{key}.weight_u"], c[f"{key}.weight_v"]
    sigma = u.astype(np.float64) @ (weight.reshape(weight.shape[0], -1).astype(np.float64) @ v)
    x = np.random.default_rng(2).normal(size=(1, 64, 8, 8))
    expected = torch_conv(x, weight / sigma, None, stride=2, padding=(1, 1))
    stage = model.correspondence.unet_label.layer3
    ours = stage.conv(tf.pad(nhwc(x), [[0, 0], [1, 1], [1, 1], [0, 0]])).numpy()
    np.testing.assert_allclose(ours, np.transpose(expected, (0, 2, 3, 1)), rtol=1e-4, atol=1e-4)
    prelu = stage.block.prelu.alpha.numpy()
    assert prelu.reshape(-1)[0] == c["adaptive_model_seg.layer3.1.relu.weight"][0]


@pytest.mark.parametrize("damage, message", [
    (lambda s: s["Corr"].pop("theta_2.weight"), "Corr: theta_2.weight is missing"),
    (lambda s: s["G"].update({"extra.weight": np.zeros((3, 3), np.float32)}),
     "G: extra.weight (3, 3) has no variable here to take it"),
    (lambda s: s["G"].update({"fc.bias": np.zeros(7, np.float32)}), "G: fc.bias has shape (7,)"),
    (lambda s: s["D"]["discriminator_1.model4.0.bias"].fill(np.nan), "D: discriminator_1.model4.0.bias holds non-finite"),
    (lambda s: s["Corr"]["adaptive_model_img.layer2.1.model.3.weight"].__iadd__(1.0), "should repeat"),
])
def test_a_mismatch_is_an_error_naming_the_keys_and_changes_nothing(model, damage, message):
    states = random_states(seed=3)
    for state in states.values():  # alias arrays are shared; copy before damaging one
        for key in list(state):
            state[key] = state[key].copy()
    damage(states)
    before = model.generator.fc.kernel.numpy().copy()
    with pytest.raises(assign.ConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        assign.assign(model, states)
    np.testing.assert_array_equal(model.generator.fc.kernel.numpy(), before)


def test_every_variable_of_ours_has_an_entry(model):
    for network in names.NETWORKS:
        covered = {id(e.variable) for e in names.entries(model, network)}
        assert {id(v) for v in names.network_of(model, network).variables} == covered


# ------------------------------------------------------------------ .pth files (PyTorch)


def save_pth(torch, state, path):
    torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()}, path)


def released_archive(torch, states, folder):
    """The released layout: latest_net_Corr.pth, a PyTorch zip into which the G and D
    files were added as top-level entries; no separate G and D files."""
    inner = {}
    for name in ("G", "D"):
        buffer = io.BytesIO()
        torch.save({k: torch.from_numpy(v.copy()) for k, v in states[name].items()}, buffer)
        inner[name] = buffer.getvalue()
    path = folder / "latest_net_Corr.pth"
    save_pth(torch, states["Corr"], path)
    with zipfile.ZipFile(path, "a") as archive:
        for name, data in inner.items():
            archive.writestr(f"latest_net_{name}.pth", data)
    return path


def test_the_released_archive_converts_into_a_run_that_loads(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="reading .pth files needs PyTorch (the convert extra)")
    states = random_states(seed=4)
    folder = tmp_path / "official"
    folder.mkdir()
    path = released_archive(torch, states, folder)
    with pytest.raises(Exception, match="subdirectory|archive"):
        torch.load(path, weights_only=True)  # why users could not load it
    out = tmp_path / "run"
    code, stdout, err = run_main(convert_main, ["--checkpoint-dir", folder, "--config", CONFIG, "--out", out,
                                                "--set", "data.crop_size=[64,64]"], capsys)
    assert code == 0, err
    assert "G: 171 parameters from" in stdout and "embedded latest_net_G.pth" in stdout
    report = json.loads((out / "conversion.json").read_text())
    assert report["discriminator"] == "converted" and report["sampling"] == "nearest"
    config = load_run_config(str(out), [])
    assert config.model.sampling == "nearest"
    loaded = load_model(config, find_checkpoint(str(out), None))
    kernel = loaded.correspondence.unet_exemplar.layer1.conv.layer.kernel.numpy()
    np.testing.assert_array_equal(kernel, np.transpose(states["Corr"]["adaptive_model_img.layer1.0.weight_orig"],
                                                       (2, 3, 1, 0)))
    np.testing.assert_array_equal(loaded.generator.conv_img.bias.numpy(), states["G"]["conv_img.bias"])
    rng = np.random.default_rng(5)
    label = tf.constant(rng.uniform(size=(1, 64, 64, 20)).astype(np.float32))
    image = loaded(label, tf.constant(rng.uniform(-1, 1, size=(1, 64, 64, 3)).astype(np.float32)), label)["image"]
    assert image.shape == (1, 64, 64, 3) and np.all(np.isfinite(image.numpy()))


def test_bad_checkpoint_folders_are_one_error_line_and_write_nothing(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="reading .pth files needs PyTorch (the convert extra)")
    states = random_states(seed=6)
    folder = tmp_path / "official"
    folder.mkdir()
    save_pth(torch, states["Corr"], folder / "latest_net_Corr.pth")
    out = tmp_path / "run"
    args = ["--checkpoint-dir", folder, "--config", CONFIG, "--out", out]
    code, _, err = run_main(convert_main, args, capsys)
    assert code == 2 and "latest_net_G.pth not found" in err and len(err.strip().splitlines()) == 1
    (folder / "latest_net_G.pth").write_bytes(b"not a checkpoint")
    code, _, err = run_main(convert_main, args, capsys)
    assert code == 2 and "latest_net_G.pth: not a readable PyTorch checkpoint" in err
    save_pth(torch, {"fc.weight": states["G"]["fc.weight"]}, folder / "latest_net_G.pth")
    code, _, err = run_main(convert_main, args, capsys)
    assert code == 2 and "G: head_0.conv_0.weight_orig is missing" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["official"]
    (out / "keep").mkdir(parents=True)
    save_pth(torch, states["G"], folder / "latest_net_G.pth")
    code, _, err = run_main(convert_main, args, capsys)
    assert code == 2 and "already exists" in err and (out / "keep").is_dir()


def test_without_pytorch_the_error_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    (tmp_path / "latest_net_Corr.pth").write_bytes(b"\x80\x02}q\x00.")
    code, _, err = run_main(convert_main, ["--checkpoint-dir", tmp_path, "--config", CONFIG,
                                           "--out", tmp_path / "run"], capsys)
    assert code == 2 and "needs PyTorch" in err and "cocosnet-tf[convert]" in err
