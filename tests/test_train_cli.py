import hashlib
import os

import pytest

from conftest import REPO, run_main, save_run
from cocosnet_tf import evaluate, train, translate
from cocosnet_tf.config import load_config

# the smallest network of tests/test_train_runs.py
TINY = ["data.crop_size=[64,64]", "model.nef=4", "model.ngf=4", "model.ndf=4", "model.corr_levels=2",
        "model.patchmatch_iterations=1", "train.batch_size=2", "data.synthetic.num_samples=64"]


def run_train(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_vgg_losses_without_weights_fail_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    run_dir = tmp_path / "run"
    code, err = run_train(["--run-dir", str(run_dir), "--set", "losses.vgg=10"], capsys)
    assert code == 2
    assert "error:" in err and "losses.vgg_weights" in err and "Traceback" not in err
    assert not run_dir.exists()


def test_resume_without_a_run_and_unknown_keys_are_clear_errors(tmp_path, capsys):
    code, err = run_train(["--run-dir", str(tmp_path / "none"), "--resume"], capsys)
    assert code == 2 and "--resume" in err and "config.yaml" in err
    code, err = run_train(["--run-dir", str(tmp_path / "x"), "--set", "train.bogus=1"], capsys)
    assert code == 2 and "train.bogus" in err
    assert not (tmp_path / "x").exists()


def run_hashes(folder):
    """{path under folder: SHA-256} of every file."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def saved_run(run_dir):
    """A tiny run as train.py leaves it: config.yaml and checkpoints/ckpt-1 with its state file."""
    save_run(load_config(os.path.join(REPO, "configs", "demo.yaml"), TINY), run_dir)
    return run_dir


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("ckpt-5.index", "ckpt-5.data-00000-of-00001"):
        (folder / name).write_bytes(b"")
    code, err = run_train(["--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "--resume" in err and "ckpt-5" in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]


def test_a_run_stopped_before_its_first_save_completed_can_start_afresh_but_not_resume(tmp_path, capsys):
    """Shards without their index: nothing to resume from, and nothing that blocks a new start."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "ckpt-5.data-00000-of-00001").write_bytes(b"partial")
    load_config(None, TINY).save(run_dir / "config.yaml")
    code, err = run_train(["--run-dir", str(run_dir), "--resume"], capsys)
    assert code == 2 and "no complete checkpoint" in err and "without --resume" in err
    train.refuse_existing_run(run_dir)  # no error: a fresh start may go ahead


def test_a_truncated_checkpoint_is_one_line_naming_the_file_in_train_translate_and_evaluate(tmp_path, capsys):
    run_dir = saved_run(tmp_path / "run")
    data = run_dir / "checkpoints" / "ckpt-1.data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    before = run_hashes(run_dir)
    commands = {
        "train": (train.main, ["--run-dir", run_dir, "--resume"]),
        "translate": (translate.main, ["--run", run_dir, "--input", tmp_path / "labels.png", "--exemplar",
                                       tmp_path / "photo.png", "--exemplar-input", tmp_path / "photo_labels.png",
                                       "--out", tmp_path / "out" / "x.png"]),
        "evaluate": (evaluate.main, ["--run", run_dir, "--out", tmp_path / "out"]),
    }
    for name, (main, args) in commands.items():
        code, _, err = run_main(main, args, capsys)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (name, err)
        assert f"{data}: truncated" in err, (name, err)
    assert run_hashes(run_dir) == before
    assert not (tmp_path / "out").exists()


def test_resuming_with_a_changed_model_is_one_line_naming_the_key_and_changes_nothing(tmp_path, capsys):
    run_dir = saved_run(tmp_path / "run")
    before = run_hashes(run_dir)
    code, err = run_train(["--run-dir", str(run_dir), "--resume", "--set", "model.nef=8"], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "model.nef (4 -> 8)" in err and "ckpt-1" in err
    assert run_hashes(run_dir) == before


def test_resuming_with_another_precision_is_one_line_naming_the_key_and_changes_nothing(tmp_path, capsys):
    """mixed_float16 adds a loss scale to each optimiser's state, which the checkpoint lacks."""
    run_dir = saved_run(tmp_path / "run")
    before = run_hashes(run_dir)
    code, err = run_train(["--run-dir", str(run_dir), "--resume", "--set", "train.mixed_precision=mixed_float16"],
                          capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "train.mixed_precision (float32 -> mixed_float16)" in err and "ckpt-1" in err
    assert run_hashes(run_dir) == before
