import pytest

from cocosnet_tf import train


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


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    code, err = run_train(["--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "--resume" in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]
