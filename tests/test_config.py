import glob
import logging
import os

import pytest

from cocosnet_tf.config import Config, ConfigError, load_config
from conftest import REPO


def test_defaults_validate():
    c = load_config()
    assert c.data.crop_size == [128, 128]
    assert c.data.semantic_nc == 8
    assert c.model.temperature == 0.01 and c.runtime.chunk == 16384 and not c.runtime.recompute


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))))
def test_shipped_configs_load(path):
    c = load_config(path)
    assert c.data.crop_size[0] % 32 == 0


def test_official_settings_in_configs():
    df = load_config(os.path.join(REPO, "configs", "deepfashion_hd_512.yaml"))
    assert df.data.crop_size == [512, 512] and df.data.load_size == [550, 550]
    assert df.data.semantic_nc == 20 and not df.data.flip
    assert (df.losses.warp_self, df.losses.warp_cycle, df.train.lr) == (500.0, 1.0, 1e-4)
    # the deviations beyond the official code are off in the official settings
    assert (df.model.locality, df.model.init_gain, df.losses.flow) == (0.0, 0.02, 0.0)
    ade = load_config(os.path.join(REPO, "configs", "ade20k_256.yaml"))
    assert ade.data.semantic_nc == 151  # 150 classes + don't-care
    meta = load_config(os.path.join(REPO, "configs", "metfaces_512.yaml"))
    assert meta.data.semantic_nc == 1


def test_overrides_parse_yaml_values():
    c = load_config(None, ["data.crop_size=[64, 96]", "train.lr=2e-4", "data.flip=true",
                           "data.synthetic.num_samples=10"])
    assert c.data.crop_size == [64, 96] and c.train.lr == 2e-4 and c.data.flip
    assert c.data.synthetic.num_samples == 10
    assert load_config(None, ["data.crop_size=256"]).data.crop_size == [256, 256]


@pytest.mark.parametrize("overrides, message", [
    (["data.crop_sise=128"], "data.crop_sise"),
    (["data.synthetic.colour=1"], "data.synthetic.colour"),
    (["dataa.x=1"], "dataa"),
    (["train.steps=ten"], "train.steps: expected an integer"),
    (["train.steps=1.5"], "train.steps: expected an integer"),
    (["data.flip=1"], "data.flip: expected true or false"),
    (["data.dataset=imagenet"], "data.dataset: 'imagenet' is not allowed"),
    (["model.sampling=cubic"], "model.sampling"),
    (["train.lr=.nan"], "train.lr: expected a finite number"),
    (["runtime.release_memory=-0.5"], "runtime.release_memory: must be >= 0 seconds"),
    (["train.release_memory=-0.5"], "runtime.release_memory: must be >= 0 seconds"),
    (["model.temperature=abc"], "model.temperature: expected a number"),
    (["data.crop_size=100"], "data.crop_size: height 100 cannot be taken"),
    (["data.crop_size=[128, 100]"], "width 100"),
    (["data.crop_size=32"], "data.crop_size"),
    (["data.load_size=[96, 96]"], "crop would not fit"),
    (["data.label_nc=5"], "data.label_nc: 5 is below the 8 labels present"),
    (["data.dataset=segmentation"], "data.root"),
    (["model.corr_levels=5"], "model.corr_levels"),
    (["model.topk=8"], "model.topk: 8 is not allowed; the key is deprecated and can only be 16"),
    (["runtime.chunk=-1"], "runtime.chunk: must be >= 0"),
    (["data.seed=-1"], "data.seed: must be >= 0"),
    (["runtime.recompute_band=-1"], "runtime.recompute_band: must be >= 0"),
    (["model.locality=-1"], "model.locality: must be >= 0"),
    (["model.init_gain=0"], "model.init_gain: must be > 0"),
    (["train.decay_steps=-1"], "train.decay_steps: must be >= 0"),
    (["losses.gan=-1"], "losses.gan"),
    (["train.lr=0"], "train.lr"),
    (["data.crop_size"], "expected section.key=value"),
    (["crop_size=128"], "section.key"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, overrides)
    assert message in str(info.value)


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.nefs=3"])
    assert "model.nefs" in str(info.value) and "nef" in str(info.value) and "temperature" in str(info.value)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)
    nested = tmp_path / "nested.yaml"
    nested.write_text("data:\n  synthetic: 3\n")
    with pytest.raises(ConfigError, match="data.synthetic: expected a mapping"):
        load_config(nested)


def test_resolved_config_round_trips(tmp_path):
    c = load_config(None, ["data.crop_size=[64, 96]", "data.synthetic.cross_scene_probability=0.5"])
    c.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == c
    assert isinstance(again, Config)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


OLD_KEYS = """\
model:
  patchmatch_iterations: 3
  topk: 16
  inference_chunk: 4096
  recompute: true
  recompute_band: 1024
train:
  steps: 7
  release_memory: 0.25
  deterministic: true
"""


def test_old_keys_load_with_one_warning_line_each_naming_the_new_key(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text(OLD_KEYS)
    with caplog.at_level(logging.WARNING, logger="cocosnet_tf.config"):
        c = load_config(path)
    r = c.runtime
    assert (r.chunk, r.recompute, r.recompute_band, r.release_memory, r.deterministic) == (4096, True, 1024, 0.25, True)
    assert c.model.patchmatch_iterations == 3 and c.train.steps == 7
    lines = [record.getMessage() for record in caplog.records]
    assert sorted(lines) == sorted([
        f"{path}: model.inference_chunk is deprecated, use runtime.chunk",
        f"{path}: model.recompute is deprecated, use runtime.recompute",
        f"{path}: model.recompute_band is deprecated, use runtime.recompute_band",
        f"{path}: train.release_memory is deprecated, use runtime.release_memory",
        f"{path}: train.deterministic is deprecated, use runtime.deterministic",
        f"{path}: model.topk is deprecated and ignored (it can only be 16), remove it"])
    # saved, the config has the new keys only and loads without a warning
    c.save(tmp_path / "again.yaml")
    caplog.clear()
    assert load_config(tmp_path / "again.yaml") == c and not caplog.records


def test_an_old_key_given_with_set_wins_over_the_file_and_warns(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("runtime:\n  chunk: 100\n")
    with caplog.at_level(logging.WARNING, logger="cocosnet_tf.config"):
        c = load_config(path, ["model.inference_chunk=0", "train.deterministic=true"])
    assert c.runtime.chunk == 0 and c.runtime.deterministic
    assert [record.getMessage() for record in caplog.records] == [
        "--set: model.inference_chunk is deprecated, use runtime.chunk",
        "--set: train.deterministic is deprecated, use runtime.deterministic"]
    # and an old run's file takes the new keys from --set
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  inference_chunk: 4096\n")
    assert load_config(old, ["runtime.chunk=0"]).runtime.chunk == 0


def test_an_old_key_beside_its_new_one_in_one_file_is_an_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  recompute: true\nruntime:\n  recompute: false\n")
    with pytest.raises(ConfigError, match="model.recompute and runtime.recompute are one setting; keep only "
                                          "runtime.recompute"):
        load_config(path)


def test_unknown_keys_stay_errors_beside_old_ones(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  inference_chunk: 64\n  inference_chunks: 64\n")
    with pytest.raises(ConfigError, match="unknown key model.inference_chunks"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown key runtime.inference_chunk"):
        load_config(None, ["runtime.inference_chunk=64"])
