"""Exemplar pair lists by retrieval: near-duplicate layouts find each other, the output
round-trips through the pair-list reader and drives a dataset, errors are clear."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from cocosnet_tf.config import load_config
from cocosnet_tf.data.exemplars import read_pair_list
from cocosnet_tf.data.kinds import build_source
from cocosnet_tf.data.pairs import main, nearest_neighbours

SIZE = 64
CLASS_COLOURS = np.array([(20, 20, 20), (200, 40, 40), (40, 200, 40), (40, 40, 200)], np.uint8)
TWINS = {"a.png": "a_twin.png", "b.png": "b_twin.png"}


def layouts() -> dict[str, np.ndarray]:
    """Class-id maps: two pairs of near-duplicates and two unlike anything else."""
    y, x = np.mgrid[:SIZE, :SIZE]
    a = np.where(x < 32, 1, 2)
    a_twin = a.copy()
    a_twin[:6, :6] = 3  # a small patch of another class
    b = np.where(y < 32, 3, 0)
    b_twin = np.where(y < 36, 3, 0)  # the boundary moved a little
    disc = np.where((x - 32) ** 2 + (y - 32) ** 2 < 15 ** 2, 2, 0)
    stripes = x // 16
    return {"a.png": a, "a_twin.png": a_twin, "b.png": b, "b_twin.png": b_twin,
            "disc.png": disc, "stripes.png": stripes}


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for name, ids in layouts().items():
        photo = CLASS_COLOURS[ids].astype(np.int64) + rng.integers(-15, 16, ids.shape + (3,))
        Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(root / "images" / name)
        Image.fromarray(ids.astype(np.uint8)).save(root / "labels" / name)
    overrides = ["data.dataset=segmentation", f"data.root={root}", "data.segmentation.image_dir=images",
                 "data.segmentation.label_dir=labels", "data.label_nc=4", "data.crop_size=64",
                 "data.exemplar.mode=pseudo"]
    config_path = tmp_path / "base.yaml"
    load_config(None, overrides).save(config_path)
    return root, str(config_path)


@pytest.mark.parametrize("by", ["label", "image", "both"])
def test_near_duplicates_pair_up_and_the_list_drives_a_dataset(dataset, tmp_path, by):
    root, config_path = dataset
    out = root / "pairs.txt"
    # the config already asks for the list being built, which does not exist yet
    main(["--config", config_path, "--set", "data.exemplar.mode=pair_list",
          "--set", "data.exemplar.pair_list=pairs.txt", "--out", str(out), "--k", "3", "--by", by])

    pairs = read_pair_list(str(out), str(root))  # every listed file exists under the root
    assert sorted(pairs) == sorted(f"images/{n}" for n in layouts())
    for target, refs in pairs.items():
        assert len(refs) == 3 and len(set(refs)) == 3
        assert target not in refs
    for name, twin in TWINS.items():
        assert pairs[f"images/{name}"][0] == f"images/{twin}"
        assert pairs[f"images/{twin}"][0] == f"images/{name}"

    config = load_config(str(root / "pairs_config.yaml"))
    assert (config.data.exemplar.mode, config.data.exemplar.pair_list) == ("pair_list", "pairs.txt")
    source = build_source(config.data)
    for index, key in enumerate(source.keys):
        sample = source.load(index, seed=0)
        exemplar, _ = source.read(pairs[key][0])  # pair_choice 'first': the best match
        np.testing.assert_allclose(sample["exemplar"], exemplar / 127.5 - 1.0, atol=1e-6)
        assert sample["self_ref"] == 0


def test_ties_go_to_the_earlier_key_and_chunks_do_not_matter():
    same = np.tile(np.array([[0.6, 0.8]], np.float32), (5, 1))
    assert nearest_neighbours(same, 2).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]]
    features = np.random.default_rng(1).normal(size=(37, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    whole = nearest_neighbours(features, 4)
    np.testing.assert_array_equal(nearest_neighbours(features, 4, chunk_rows=5), whole)
    brute = features @ features.T
    np.fill_diagonal(brute, -np.inf)
    np.testing.assert_array_equal(whole, np.argsort(-brute, axis=1, kind="stable")[:, :4])


def test_k_must_leave_another_image(dataset, capsys):
    root, config_path = dataset
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", config_path, "--out", str(root / "pairs.txt"), "--k", "6"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--k 6" in error and "has 6" in error
    assert not os.path.exists(root / "pairs.txt")
    with pytest.raises(SystemExit):
        main(["--config", config_path, "--out", str(root / "pairs.txt"), "--k", "0"])
    assert "--k must be at least 1" in capsys.readouterr().err


def test_synthetic_dataset_has_nothing_to_pair(dataset, tmp_path, capsys):
    _, config_path = dataset
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", config_path, "--set", "data.dataset=synthetic", "--set", "data.label_nc=8",
              "--out", str(tmp_path / "pairs.txt")])
    assert exit_info.value.code == 2
    assert "synthetic" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "pairs.txt")
