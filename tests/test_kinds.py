"""The dataset-kind registry: every dataset the configuration allows has a kind, an
unknown one is a one-line error, and each kind's channel count is what its source gives."""

from __future__ import annotations

import os
import typing

import numpy as np
import pytest
from PIL import Image

from cocosnet_tf.config import ConfigError, DataConfig
from cocosnet_tf.data.kinds import KINDS, build_source, dataset_kind


def test_every_dataset_the_config_allows_has_a_kind():
    allowed = typing.get_args(typing.get_type_hints(DataConfig)["dataset"])
    assert sorted(KINDS) == sorted(allowed)
    for name in allowed:
        kind = dataset_kind(DataConfig(dataset=name))
        assert kind.name == name
        assert kind.translate_args.startswith("--input ") and "--exemplar " in kind.translate_args


def test_an_unknown_dataset_is_a_one_line_error():
    with pytest.raises(ConfigError) as err:
        dataset_kind(DataConfig(dataset="cityscapes"))
    message = str(err.value)
    assert "\n" not in message and "'cityscapes'" in message
    assert all(name in message for name in KINDS)


def write_photo(path, rng, h=64, w=64):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def tiny_dataset(kind: str, root) -> list[str]:
    """Writes two samples of `kind` under `root`; returns the config overrides that read them."""
    rng = np.random.default_rng(0)
    if kind == "synthetic":
        return ["data.synthetic.num_samples=2"]
    if kind == "segmentation":
        os.makedirs(root / "labels")
        for i in range(2):
            write_photo(root / "images" / f"{i}.png", rng)
            Image.fromarray(rng.integers(0, 4, (64, 64), dtype=np.uint8)).save(root / "labels" / f"{i}.png")
        return [f"data.root={root}", "data.segmentation.image_dir=images", "data.segmentation.label_dir=labels",
                "data.label_nc=4", "data.contain_dontcare_label=true"]
    if kind == "edges":
        for i in range(2):
            write_photo(root / "photos" / f"{i}.png", rng)
        return [f"data.root={root}", "data.edges.image_dir=photos"]
    for i in range(2):
        key = f"img/WOMEN/Tees/id_{i}/0{i}_1_front.png"
        write_photo(root / key, rng)
        stem = str(root / os.path.splitext(key.replace("img/", "pose/", 1))[0])
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        subset = -np.ones(20)
        subset[[0, 1]], subset[18:] = (0, 1), (1.0, 2)
        np.savetxt(stem + "_candidate.txt", np.array([[300, 200, 0.9, 0], [320, 400, 0.9, 1]], float))
        np.savetxt(stem + "_subset.txt", subset[None])
    return [f"data.root={root}"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_counts_the_channels_its_source_gives(kind, make_config, tmp_path):
    config = make_config(f"data.dataset={kind}", "data.crop_size=64", "data.exemplar.mode=pseudo",
                         *tiny_dataset(kind, tmp_path))
    sample = build_source(config.data).load(0, seed=0)
    channels = dataset_kind(config.data).semantic_nc(config.data)
    assert sample["label"].shape[-1] == sample["exemplar_label"].shape[-1] == channels
    assert str(channels) in dataset_kind(config.data).channel_layout(config.data)
