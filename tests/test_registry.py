import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_main
from cocosnet_tf import evaluate, train, translate
from cocosnet_tf.config import ConfigError, load_config
from cocosnet_tf.export import __main__ as export
from cocosnet_tf.models.registry import KINDS, model_kind

TINY = ["data.crop_size=[64,64]", "model.nef=4", "model.ngf=4", "model.ndf=4", "model.corr_levels=2",
        "model.patchmatch_iterations=1"]


def test_an_unknown_kind_is_one_line_naming_the_known_kinds(make_config):
    with pytest.raises(ConfigError) as error:
        model_kind(make_config("model.kind=pix2pix"))
    assert str(error.value) == "model.kind: 'pix2pix' is not a model kind; known: cocosnet, pix2pixhd"


def test_a_config_written_without_model_kind_is_cocosnet(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("model:\n  nef: 8\n")
    assert model_kind(load_config(path)) is KINDS["cocosnet"]


def test_every_command_refuses_an_unknown_kind_before_writing_anything(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_main(train.main, ["--run-dir", run_dir, "--set", "model.kind=nope"], capsys)
    assert code == 2 and err.strip() == "error: model.kind: 'nope' is not a model kind; known: cocosnet, pix2pixhd"
    assert not run_dir.exists()
    run_dir.mkdir()
    load_config(None, ["model.kind=nope"]).save(run_dir / "config.yaml")
    out = tmp_path / "out"
    commands = {"translate": (translate.main, ["--run", run_dir, "--input", "a.png", "--exemplar", "b.png",
                                               "--out", out / "x.png"]),
                "evaluate": (evaluate.main, ["--run", run_dir, "--out", out]),
                "export": (export.main, ["savedmodel", "--run", run_dir, "--out", out])}
    for name, (main, args) in commands.items():
        code, _, err = run_main(main, args, capsys)
        assert code == 2 and err.strip() == "error: model.kind: 'nope' is not a model kind; known: cocosnet, pix2pixhd", name
    assert not out.exists()


def test_the_registry_loads_no_tensorflow():
    # the commands check configs and inputs before TensorFlow loads
    code = "import sys; import cocosnet_tf.models.registry; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})


def test_cocosnet_gives_the_commands_its_call_under_the_input_and_output_names(make_config):
    config = make_config(*TINY)
    kind = model_kind(config)
    model = kind.build(config)
    model.build_inference(64, 64)
    rng = np.random.default_rng(0)
    inputs = {name: rng.uniform(0, 1, (1, 64, 64, channels)).astype(np.float32)
              for name, channels in kind.input_channels(config).items()}
    assert list(inputs) == ["label", "exemplar", "exemplar_label"] and kind.needs_exemplar
    out = kind.inference(model)(**inputs)
    direct = model(*inputs.values())
    assert list(out) == ["image", "warp0", "warp1"]
    for got, expected in zip(out.values(), [direct["image"], *direct["warps"]], strict=True):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    assert kind.inference_networks(model) == {"correspondence": model.correspondence, "generator": model.generator}
