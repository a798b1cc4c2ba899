import numpy as np
import pytest

from cocosnet_tf.config import ExemplarConfig
from cocosnet_tf.data.exemplars import ExemplarPicker, read_pair_list, write_pair_list
from cocosnet_tf.fileio import DataError


def touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_pair_list_format(tmp_path):
    touch(tmp_path, "img/a.jpg", "img/b.jpg", "img/c.jpg")
    path = tmp_path / "pairs.txt"
    path.write_text("img\\a.jpg,img\\b.jpg,img/c.jpg\n\n# a comment\nimg/b.jpg, img/a.jpg\n")
    pairs = read_pair_list(str(path), str(tmp_path))
    assert pairs == {"img/a.jpg": ["img/b.jpg", "img/c.jpg"], "img/b.jpg": ["img/a.jpg"]}
    write_pair_list(str(tmp_path / "out.txt"), pairs)
    assert read_pair_list(str(tmp_path / "out.txt"), str(tmp_path)) == pairs


def test_pair_list_errors(tmp_path):
    with pytest.raises(DataError, match="pair list does not exist"):
        read_pair_list(str(tmp_path / "none.txt"))
    (tmp_path / "short.txt").write_text("img/a.jpg,img/b.jpg\nimg/c.jpg\n")
    with pytest.raises(DataError, match=r"short.txt:2: expected 'target,reference"):
        read_pair_list(str(tmp_path / "short.txt"))
    touch(tmp_path, "img/a.jpg")
    (tmp_path / "absent.txt").write_text("img/a.jpg,img/gone.jpg\n")
    with pytest.raises(DataError, match=r"1 listed files do not exist .*line 1: img/gone.jpg"):
        read_pair_list(str(tmp_path / "absent.txt"), str(tmp_path))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        read_pair_list(str(tmp_path / "empty.txt"))


def test_picker_modes():
    keys = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    pseudo = ExemplarPicker(ExemplarConfig(mode="pseudo"), keys)
    assert pseudo.pick("a", rng).pseudo
    other = ExemplarPicker(ExemplarConfig(mode="random"), keys)
    picks = {other.pick("a", rng).key for _ in range(50)}
    assert picks == {"b", "c"}
    pairs = {"a": ["b", "c"], "b": ["a"], "c": ["a"]}
    first = ExemplarPicker(ExemplarConfig(mode="pair_list", pair_choice="first"), keys, pairs)
    last = ExemplarPicker(ExemplarConfig(mode="pair_list", pair_choice="last"), keys, pairs, pairs_are_self_ref=True)
    assert first.pick("a", rng).key == "b" and not first.pick("a", rng).self_ref
    assert last.pick("a", rng).key == "c" and last.pick("a", rng).self_ref
    mixed = ExemplarPicker(ExemplarConfig(mode="pair_list", pseudo_probability=0.5), keys, pairs)
    share = np.mean([mixed.pick("a", rng).pseudo for _ in range(400)])
    assert 0.4 < share < 0.6
    with pytest.raises(DataError, match="have no line in the pair list"):
        ExemplarPicker(ExemplarConfig(mode="pair_list"), keys + ["d"], pairs)
