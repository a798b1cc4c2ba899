import configparser
import importlib
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


def test_import_without_tensorflow_names_the_extra():
    # None in sys.modules: the import system finds no `tensorflow`, as on a machine without it
    code = "import sys; sys.modules['tensorflow'] = None; import cocosnet_tf"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "cocosnet-tf[cpu]" in result.stderr and "cocosnet-tf[gpu]" in result.stderr


COMMANDS = ["cocosnet_tf.train", "cocosnet_tf.translate", "cocosnet_tf.evaluate", "cocosnet_tf.weights",
            "cocosnet_tf.convert_official", "cocosnet_tf.data.preview", "cocosnet_tf.data.pairs",
            "cocosnet_tf.data.photos", "cocosnet_tf.export", "cocosnet_tf.serving", "cocosnet_tf.serving.client"]


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


# `import cocosnet_tf.export...`, `from cocosnet_tf.serving... import`, `from cocosnet_tf import export`
IMPORTS_EXPORT_OR_SERVING = re.compile(
    r"^\s*(from|import)\s+cocosnet_tf(\.(export|serving)\b|\s+import\s+.*\b(export|serving)\b)", re.M)


def test_library_never_imports_export_or_serving():
    # export and serving are built on the library, never the other way round
    for folder, _, files in os.walk(os.path.join(REPO, "cocosnet_tf")):
        if os.path.relpath(folder, os.path.join(REPO, "cocosnet_tf")).split(os.sep)[0] in ("export", "serving"):
            continue
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                assert not IMPORTS_EXPORT_OR_SERVING.search(text), name


def not_sources(folder, names):
    """What a checkout holds besides its sources (a venv, runs, caches, build output)."""
    top = {".git", ".venv", "runs", "data", "exports", "build", "dist"} if os.path.samefile(folder, REPO) else set()
    return [n for n in names if n in top or n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of the checkout (the build leaves build/ and egg-info behind)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=not_sources)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(root / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = (root / "dist").glob("cocosnet_tf-*.whl")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = configparser.ConfigParser(delimiters="=")
        scripts.read_string(archive.read(entry_points).decode())
    return names, dict(scripts["console_scripts"])


def test_the_wheel_installs_one_top_level_package(wheel):
    names, _ = wheel
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"cocosnet_tf"}
    assert {"cocosnet_tf/export/__main__.py", "cocosnet_tf/serving/__main__.py",
            "cocosnet_tf/serving/models.config", "cocosnet_tf/py.typed",
            "cocosnet_tf/custom_ops/candidate_scores.cc"} <= set(names)


def test_every_console_script_resolves_and_answers_help_without_tensorflow(wheel, broken_tensorflow):
    _, scripts = wheel
    assert {"cocosnet-train", "cocosnet-translate", "cocosnet-evaluate", "cocosnet-export", "cocosnet-serve",
            "cocosnet-weights"} <= set(scripts)
    for name, target in scripts.items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), name
        # what the installed script runs: main() with the command line in sys.argv
        code = f"import sys; sys.argv = [{name!r}, '--help']; from {module} import {attribute}; {attribute}()"
        result = subprocess.run([sys.executable, "-c", code], env=broken_tensorflow, cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr[-2000:])
