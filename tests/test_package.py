import os
import subprocess
import sys

import pytest

from conftest import REPO


def test_import_without_tensorflow_names_the_extra():
    # None in sys.modules: the import system finds no `tensorflow`, as on a machine without it
    code = "import sys; sys.modules['tensorflow'] = None; import cocosnet_tf"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "cocosnet-tf[cpu]" in result.stderr and "cocosnet-tf[gpu]" in result.stderr


COMMANDS = ["cocosnet_tf.train", "cocosnet_tf.translate", "cocosnet_tf.convert_official", "cocosnet_tf.data.preview",
            "cocosnet_tf.data.pairs", "cocosnet_tf.data.photos", "export"]


@pytest.fixture
def broken_tensorflow(tmp_path):
    """An environment whose `tensorflow` fails on import: whatever works in it never
    imported TensorFlow."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('this TensorFlow is broken')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_usage_errors_answer_without_tensorflow(broken_tensorflow, command):
    result = subprocess.run([sys.executable, "-m", command, "--help"], env=broken_tensorflow, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
    result = subprocess.run([sys.executable, "-m", command, "--no-such-option"], env=broken_tensorflow, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr


def test_a_command_without_tensorflow_names_the_extra(broken_tensorflow, tmp_path):
    result = subprocess.run([sys.executable, "-m", "cocosnet_tf.train", "--run-dir", str(tmp_path / "run")],
                            env=broken_tensorflow, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "cocosnet-tf[cpu]" in result.stderr
    assert not (tmp_path / "run").exists()


def test_library_never_imports_export_or_serving():
    for folder, _, files in os.walk(os.path.join(REPO, "cocosnet_tf")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                assert "from export" not in text and "import export" not in text, name
                assert "from serving" not in text and "import serving" not in text, name
