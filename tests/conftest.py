import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from cocosnet_tf.config import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def make_config():
    """load_config(None, overrides) with the built-in defaults."""
    return lambda *overrides: load_config(None, list(overrides))
