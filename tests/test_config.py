import glob
import os

import pytest

from cocosnet_tf.config import Config, ConfigError, load_config
from conftest import REPO


def test_defaults_validate():
    c = load_config()
    assert c.data.crop_size == [128, 128]
    assert c.data.semantic_nc == 8
    assert c.model.temperature == 0.01 and c.model.topk == 16


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
    (["train.release_memory=-0.5"], "train.release_memory: must be >= 0 seconds"),
    (["model.temperature=abc"], "model.temperature: expected a number"),
    (["data.crop_size=100"], "data.crop_size: height 100 cannot be taken"),
    (["data.crop_size=[128, 100]"], "width 100"),
    (["data.crop_size=32"], "data.crop_size"),
    (["data.load_size=[96, 96]"], "crop would not fit"),
    (["data.label_nc=5"], "data.label_nc: 5 is below the 8 labels present"),
    (["data.dataset=segmentation"], "data.root"),
    (["model.corr_levels=5"], "model.corr_levels"),
    (["model.topk=8"], "model.topk"),
    (["data.seed=-1"], "data.seed: must be >= 0"),
    (["model.recompute_band=-1"], "model.recompute_band: must be >= 0"),
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
