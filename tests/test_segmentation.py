import os

import numpy as np
import pytest
from PIL import Image

from cocosnet_tf.data.kinds import build_source
from cocosnet_tf.data.labels import instance_boundaries
from cocosnet_tf.data.pipeline import build_dataset
from cocosnet_tf.fileio import DataError


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def blocks(rng, h, w, ids):
    """A label map of random axis-aligned blocks using the given ids."""
    label = np.full((h, w), ids[0], np.uint8)
    for value in ids[1:]:
        y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
        label[y: y + rng.integers(8, 16), x: x + rng.integers(8, 16)] = value
    return label


def photo(rng, h, w):
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def ade(tmp_path):
    """ADEChallengeData2016 layout: ids 0 ('other') .. 150."""
    rng = np.random.default_rng(0)
    labels = {}
    for folder in ("training", "validation"):
        for i in range(3):
            name = f"ADE_{folder}_{i:08d}"
            write_png(tmp_path / "images" / folder / f"{name}.png", photo(rng, 48, 64))
            labels[name] = blocks(rng, 48, 64, [0, 5, 150, 12])
            write_png(tmp_path / "annotations" / folder / f"{name}.png", labels[name])
    return tmp_path, labels


def ade_config(make_config, root, *extra):
    return make_config("data.dataset=segmentation", f"data.root={root}", "data.segmentation.layout=ade20k",
                       "data.label_nc=150", "data.contain_dontcare_label=true",
                       "data.segmentation.label_offset=-1", "data.segmentation.dontcare_id=-1",
                       "data.crop_size=64", "data.exemplar.mode=random", *extra)


def test_ade20k_one_hot_with_dontcare(make_config, ade):
    root, labels = ade
    source = build_source(ade_config(make_config, root).data)
    assert len(source) == 3 and source.semantic_nc == 151
    image, label = source.read(source.keys[0])
    assert image.shape == (64, 64, 3) and label.shape == (64, 64, 151)
    ids = np.asarray(Image.fromarray(labels["ADE_training_00000000"]).resize((64, 64), Image.NEAREST)).astype(int)
    np.testing.assert_array_equal(label.sum(-1), 1.0)
    np.testing.assert_array_equal(label[..., 150], ids == 0)  # 'other' -> don't-care channel
    np.testing.assert_array_equal(label[..., 149], ids == 150)  # id 150 -> channel 149
    np.testing.assert_array_equal(label[..., 4], ids == 5)
    sample = source.load(0, seed=0)
    assert sample["self_ref"] == 0 and sample["has_flow"] == 0
    assert not np.array_equal(sample["exemplar"], sample["image"])


def test_test_phase_reads_validation(make_config, ade):
    root, _ = ade
    source = build_source(ade_config(make_config, root, "data.phase=test").data)
    assert all(k.startswith("images/validation/") for k in source.keys)


def test_cocostuff_instances_and_dontcare(make_config, tmp_path):
    rng = np.random.default_rng(1)
    label = blocks(rng, 64, 64, [3, 181, 255])
    instance = np.zeros((64, 64), np.uint16)
    instance[10:30, 10:30], instance[20:40, 20:40] = 1, 2  # two touching instances
    write_png(tmp_path / "train_img" / "a.png", photo(rng, 64, 64))
    write_png(tmp_path / "train_label" / "a.png", label)
    os.makedirs(tmp_path / "train_inst", exist_ok=True)
    Image.fromarray(instance).save(tmp_path / "train_inst" / "a.png")
    c = make_config("data.dataset=segmentation", f"data.root={tmp_path}", "data.segmentation.layout=cocostuff",
                    "data.label_nc=182", "data.contain_dontcare_label=true", "data.segmentation.dontcare_id=255",
                    "data.use_instance=true", "data.crop_size=64", "data.exemplar.mode=pseudo")
    source = build_source(c.data)
    assert source.semantic_nc == 184
    _, sem = source.read("train_img/a.png")
    np.testing.assert_array_equal(sem[..., 182], label == 255)
    np.testing.assert_array_equal(sem[..., 181], label == 181)
    np.testing.assert_array_equal(sem[..., 183], instance_boundaries(instance))
    assert sem[..., 183][15, 29] == 1 and sem[..., 183][15, 31] == 0  # edge of instance 1 only
    sample = source.load(0, seed=3)
    assert sample["has_flow"] == 1 and sample["self_ref"] == 1  # a pseudo-pair


def test_cityscapes_suffixes(make_config, tmp_path):
    rng = np.random.default_rng(2)
    for city in ("aachen", "bremen"):
        stem = f"{city}_000000_000019"
        write_png(tmp_path / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png", photo(rng, 32, 64))
        write_png(tmp_path / "gtFine" / "train" / city / f"{stem}_gtFine_labelIds.png", blocks(rng, 32, 64, [7, 26, 33]))
        write_png(tmp_path / "gtFine" / "train" / city / f"{stem}_gtFine_color.png", photo(rng, 32, 64))
    c = make_config("data.dataset=segmentation", f"data.root={tmp_path}", "data.segmentation.layout=cityscapes",
                    "data.label_nc=35", "data.crop_size=[64, 128]", "data.exemplar.mode=random")
    source = build_source(c.data)
    assert sorted(source.keys) == ["leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
                                   "leftImg8bit/train/bremen/bremen_000000_000019_leftImg8bit.png"]
    image, label = source.read(source.keys[0])
    assert image.shape == (64, 128, 3) and label.shape == (64, 128, 35)


def custom(make_config, root, *extra):
    return make_config("data.dataset=segmentation", f"data.root={root}", "data.segmentation.image_dir=images",
                       "data.segmentation.label_dir=labels", "data.label_nc=4", "data.crop_size=64",
                       "data.exemplar.mode=random", *extra)


def small_custom(root, n=3, ids=(0, 1, 2, 3)):
    rng = np.random.default_rng(3)
    for i in range(n):
        write_png(root / "images" / f"{i}.png", photo(rng, 64, 64))
        write_png(root / "labels" / f"{i}.png", blocks(rng, 64, 64, list(ids)))


def test_missing_folder(make_config, tmp_path):
    with pytest.raises(DataError, match="images: folder does not exist"):
        build_source(custom(make_config, tmp_path).data)
    with pytest.raises(DataError, match="data.root folder does not exist"):
        build_source(custom(make_config, tmp_path / "nowhere").data)


def test_images_without_labels_and_the_reverse(make_config, tmp_path):
    small_custom(tmp_path)
    os.remove(tmp_path / "labels" / "1.png")
    write_png(tmp_path / "labels" / "9.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError) as info:
        build_source(custom(make_config, tmp_path).data)
    message = str(info.value)
    assert "1 images in images have no label map" in message and "1.png" in message and "9.png" in message
    source = build_source(custom(make_config, tmp_path, "data.on_bad_sample=skip").data)
    assert source.keys == ["images/0.png", "images/2.png"]


def test_label_ids_beyond_the_count(make_config, tmp_path):
    small_custom(tmp_path, ids=(0, 1, 7))
    source = build_source(custom(make_config, tmp_path).data)
    with pytest.raises(DataError, match=r"labels/0.png: label ids \[7\] are outside 0..3"):
        source.read(source.keys[0])


def test_truncated_image_and_size_mismatch(make_config, tmp_path):
    small_custom(tmp_path)
    data = open(tmp_path / "images" / "1.png", "rb").read()
    open(tmp_path / "images" / "1.png", "wb").write(data[: len(data) // 2])
    write_png(tmp_path / "labels" / "2.png", np.zeros((32, 64), np.uint8))
    source = build_source(custom(make_config, tmp_path).data)
    with pytest.raises(DataError, match="images/1.png: unreadable or truncated"):
        source.read("images/1.png")
    with pytest.raises(DataError, match="labels/2.png: label map is 64x32 but its image"):
        source.read("images/2.png")


def test_colour_label_map_is_rejected(make_config, tmp_path):
    small_custom(tmp_path, n=2)
    write_png(tmp_path / "labels" / "0.png", photo(np.random.default_rng(0), 64, 64))
    source = build_source(custom(make_config, tmp_path).data)
    with pytest.raises(DataError, match="labels/0.png: label map is a colour image"):
        source.read("images/0.png")


def test_pipeline_errors_name_the_file_or_skip_and_count(make_config, tmp_path):
    small_custom(tmp_path, n=4)
    open(tmp_path / "images" / "2.png", "wb").write(b"not a png")
    strict = build_dataset(custom(make_config, tmp_path, "data.exemplar.mode=pseudo").data, repeat=False)
    with pytest.raises(Exception, match="images/2.png: unreadable or truncated"):
        list(strict)
    lenient = build_dataset(custom(make_config, tmp_path, "data.exemplar.mode=pseudo",
                                   "data.on_bad_sample=skip").data, repeat=False, shuffle=False)
    indices = [int(s["index"]) for s in lenient]
    assert indices == [0, 1, 3]
    assert lenient.loader.skipped == 1


def test_official_ade20k_pair_list_with_bare_names_across_splits(make_config, ade):
    root, _ = ade
    # the official lists name files only, and validation targets take training references
    (root / "ade20k_ref_test.txt").write_text(
        "".join(f"ADE_validation_{i:08d}.png,ADE_training_{(i + 1) % 3:08d}.png\n" for i in range(3)))
    c = ade_config(make_config, root, "data.phase=test", "data.exemplar.mode=pair_list",
                   "data.exemplar.pair_list=ade20k_ref_test.txt", "data.exemplar.pseudo_probability=0.5")
    source = build_source(c.data)
    sample = source.load(0, seed=0)
    reference, _ = source.read("images/training/ADE_training_00000001.png")
    np.testing.assert_allclose(sample["exemplar"], reference / 127.5 - 1.0, atol=1e-6)
    assert sample["has_flow"] == 0  # the test phase never swaps in a pseudo-pair


def test_cityscapes_pairs_each_image_with_its_own_label(make_config, tmp_path):
    rng = np.random.default_rng(4)
    labels = {}
    for city in ("aachen", "bremen"):
        stem = f"{city}_000000_000019"
        labels[city] = blocks(rng, 64, 128, [7, 26, 33] if city == "aachen" else [11, 21, 24])
        write_png(tmp_path / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png", photo(rng, 64, 128))
        write_png(tmp_path / "gtFine" / "train" / city / f"{stem}_gtFine_labelIds.png", labels[city])
        write_png(tmp_path / "gtFine" / "train" / city / f"{stem}_gtFine_instanceIds.png",
                  (labels[city] > 20).astype(np.uint8) * 3)
    c = make_config("data.dataset=segmentation", f"data.root={tmp_path}", "data.segmentation.layout=cityscapes",
                    "data.label_nc=35", "data.use_instance=true", "data.crop_size=[64, 128]",
                    "data.exemplar.mode=random")
    source = build_source(c.data)
    for city in ("aachen", "bremen"):
        _, label = source.read(f"leftImg8bit/train/{city}/{city}_000000_000019_leftImg8bit.png")
        np.testing.assert_array_equal(np.argmax(label[..., :35], -1), labels[city])
        np.testing.assert_array_equal(label[..., 35], instance_boundaries((labels[city] > 20).astype(np.uint8)))


def test_sixteen_bit_photos_and_bilevel_masks(make_config, tmp_path):
    from cocosnet_tf.fileio import read_label_ids, read_rgb
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgb = read_rgb(str(tmp_path / "deep.png"))
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_allclose(rgb[..., 0].astype(float), ramp / 65535 * 255, atol=0.51)  # scaled, not clipped
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    Image.fromarray(mask).save(tmp_path / "mask.png")
    np.testing.assert_array_equal(read_label_ids(str(tmp_path / "mask.png")), mask.astype(int))
