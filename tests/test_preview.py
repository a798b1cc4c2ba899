import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from cocosnet_tf.config import load_config
from cocosnet_tf.data import preview
from cocosnet_tf.data.sources import SAMPLE_KEYS
from cocosnet_tf.visualize import HEADER


def test_preview_writes_sheet_arrays_and_config(tmp_path, capsys):
    out = tmp_path / "preview"
    preview.main(["--set", "data.crop_size=[64, 96]", "--set", "data.synthetic.num_samples=5",
                  "--count", "3", "--out", str(out), "--arrays"])
    sheet = np.asarray(Image.open(out / "preview.png"))
    assert sheet.shape == (3 * 64 + HEADER, 6 * 96, 3)
    config = load_config(out / "config.yaml")
    assert config.data.crop_size == [64, 96]
    for i in range(3):
        arrays = np.load(out / f"sample_{i:04d}.npz")
        assert set(SAMPLE_KEYS) <= set(arrays.files)
        assert arrays["image"].shape == (64, 96, 3) and arrays["label"].shape == (64, 96, 8)
    # the sheet shows the samples: the 'image' column of row 0 is sample 0's image
    first = np.load(out / "sample_0000.npz")
    tile = sheet[HEADER: HEADER + 64, 3 * 96: 4 * 96]
    np.testing.assert_array_equal(tile, preview.to_uint8(first["image"]))
    assert "wrote 3 samples" in capsys.readouterr().out


def test_preview_rejects_bad_overrides(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        preview.main(["--set", "data.crop_size=100", "--out", str(tmp_path / "p")])
    assert info.value.code == 2
    assert "data.crop_size: height 100" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # nothing half-written


def test_zero_displacement_is_white():
    from cocosnet_tf.data.geometry import xy_grid
    picture = preview.flow_colour(xy_grid(8, 8))
    np.testing.assert_array_equal(picture, 255)  # no displacement: white


def test_preview_names_a_corrupt_file_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "labels" / f"{i}.png")
    (tmp_path / "images" / "1.png").write_bytes(b"junk")
    with pytest.raises(SystemExit) as info:
        preview.main(["--set", "data.dataset=segmentation", "--set", f"data.root={tmp_path}",
                      "--set", "data.segmentation.image_dir=images", "--set", "data.segmentation.label_dir=labels",
                      "--set", "data.label_nc=2", "--set", "data.crop_size=64", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "images/1.png: unreadable or truncated image" in last
    assert not (tmp_path / "out").exists()


def test_a_command_prints_no_tensorflow_import_notices(tmp_path):
    # a newcomer's first command: its own lines only, not TensorFlow's C++ start-up notices
    command = [sys.executable, "-m", "cocosnet_tf.data.preview", "--count", "1", "--set",
               "data.synthetic.num_samples=2", "--out", str(tmp_path / "p")]
    for level in (None, "2"):
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        if level is not None:
            env["TF_CPP_MIN_LOG_LEVEL"] = level
        result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("wrote 1 samples")
        assert "oneDNN" not in result.stderr and "absl::InitializeLog" not in result.stderr, (level, result.stderr)
