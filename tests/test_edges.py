import os

import numpy as np
import pytest
from PIL import Image

from cocosnet_tf.config import EdgesConfig
from cocosnet_tf.data.edges import edge_map
from cocosnet_tf.data.geometry import inside, sample_bilinear
from cocosnet_tf.data.kinds import build_source

skimage_data = pytest.importorskip("skimage.data", reason="the real photographs come from scikit-image")


@pytest.fixture
def photo_folder(tmp_path):
    """Real photographs shipped inside scikit-image, as JPEG and PNG files."""
    for name, ext in (("astronaut", "jpg"), ("coffee", "png"), ("chelsea", "jpg"), ("rocket", "png")):
        os.makedirs(tmp_path / "photos" / ext, exist_ok=True)
        Image.fromarray(getattr(skimage_data, name)()).save(tmp_path / "photos" / ext / f"{name}.{ext}")
    return tmp_path


def sobel_magnitude(gray):
    gy, gx = np.gradient(gray.astype(np.float64))
    return np.hypot(gx, gy)


def test_edges_of_a_real_photo_follow_its_gradients():
    photo = skimage_data.astronaut()
    edges = edge_map(photo, EdgesConfig())
    assert edges.shape == (512, 512, 1) and set(np.unique(edges)) == {0.0, 1.0}
    density = edges.mean()
    assert 0.01 < density < 0.3
    magnitude = sobel_magnitude(photo.mean(-1))
    on_edges = magnitude[edges[..., 0] > 0]
    assert np.median(on_edges) > 3 * np.median(magnitude)
    # thresholds matter: higher ones keep fewer edges
    assert edge_map(photo, EdgesConfig(canny_low=150, canny_high=300)).mean() < density


def test_flat_image_has_no_edges():
    assert not edge_map(np.full((64, 64, 3), 128, np.uint8), EdgesConfig()).any()


def test_edge_source_on_a_folder_of_photos(make_config, photo_folder):
    c = make_config("data.dataset=edges", f"data.root={photo_folder}", "data.edges.image_dir=photos",
                    "data.crop_size=[128, 160]", "data.exemplar.mode=pseudo")
    source = build_source(c.data)
    assert sorted(source.keys) == ["photos/jpg/astronaut.jpg", "photos/jpg/chelsea.jpg",
                                   "photos/png/coffee.png", "photos/png/rocket.png"]
    assert source.semantic_nc == 1
    sample = source.load(0, seed=0)
    assert sample["label"].shape == (128, 160, 1) and sample["image"].shape == (128, 160, 3)
    assert sample["has_flow"] == 1 and sample["self_ref"] == 1
    # the pseudo-pair flow is the true correspondence on a real photo too
    valid = inside(sample["flow"], 128, 160)
    err = np.abs(sample_bilinear(sample["exemplar"], sample["flow"]) - sample["image"]).max(-1)[valid]
    assert np.median(err) < 0.05 and np.mean(err < 0.2) > 0.9


def test_edge_source_other_photo_exemplars(make_config, photo_folder):
    c = make_config("data.dataset=edges", f"data.root={photo_folder}", "data.crop_size=64",
                    "data.exemplar.mode=random")
    source = build_source(c.data)
    assert len(source) == 4  # image_dir empty: the whole root
    sample = source.load(1, seed=5)
    assert sample["self_ref"] == 0 and sample["has_flow"] == 0 and not sample["flow"].any()


def test_the_photos_command_tiles_training_and_heldout_photos_apart(tmp_path, capsys):
    from cocosnet_tf.config import load_config
    from cocosnet_tf.data import photos

    photos.main(["--out", str(tmp_path / "photos"), "--tile", "64", "--scales", "64", "128"])
    assert "training and" in capsys.readouterr().out
    split = {name: sorted(os.listdir(tmp_path / "photos" / name)) for name in ("train", "heldout")}
    sources = {name: {f.rsplit("_", 1)[0] for f in files} for name, files in split.items()}
    assert sources["heldout"] == set(photos.HELDOUT) and not sources["heldout"] & sources["train"]
    tile = np.asarray(Image.open(tmp_path / "photos" / "heldout" / split["heldout"][0]))
    assert tile.shape == (64, 64, 3) and tile.std() > 5  # a piece of a photograph, not a blank
    # the edges demo's config reads them: training tiles in the train phase, held-out ones in the test phase
    config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "edges_demo.yaml"),
                         [f"data.root={tmp_path / 'photos'}"])
    assert len(build_source(config.data)) == len(split["train"])
    test_data = config.data.__class__(**{**config.data.__dict__, "phase": "test"})
    assert len(build_source(test_data)) == len(split["heldout"])
    sample = build_source(test_data).load(0, seed=0)
    assert sample["has_flow"] == 1 and 0.3 < sample["flow_mask"].mean() <= 1.0
