import os
import subprocess
import sys

from conftest import REPO


def test_import_without_tensorflow_names_the_extra(tmp_path):
    # a `tensorflow` package that fails to import stands in for a machine without it
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named tensorflow')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
    result = subprocess.run([sys.executable, "-c", "import cocosnet_tf"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "cocosnet-tf[cpu]" in result.stderr and "cocosnet-tf[gpu]" in result.stderr


def test_library_never_imports_export_or_serving():
    for folder, _, files in os.walk(os.path.join(REPO, "cocosnet_tf")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                assert "from export" not in text and "import export" not in text, name
                assert "from serving" not in text and "import serving" not in text, name
