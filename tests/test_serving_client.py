"""python -m cocosnet_tf.serving.client needs no TensorFlow to start: its help (which shows the default
--url) and the request code load numpy and the standard library only."""

import os
import subprocess
import sys

from conftest import REPO


def test_client_help_loads_no_tensorflow_and_shows_the_default_url():
    script = ("import sys\nfrom cocosnet_tf.serving.client import main\ntry:\n    main(['--help'])\n"
              "except SystemExit:\n    pass\nprint('tensorflow loaded:', 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                         capture_output=True, text=True, timeout=60).stdout
    assert "--url URL" in out and "default http://127.0.0.1:8501" in out
    assert out.rstrip().endswith("tensorflow loaded: False")
