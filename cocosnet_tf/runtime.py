"""The execution settings (the config's `runtime` section) of the layers made inside a
`runtime_settings` block.

They say how the networks run (chunks, recomputation), not what they compute, so they
are no constructor parameters and no part of a layer's get_config: a layer reads them
from `current_runtime()` when it is made. Outside any block they are the section's
defaults.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from cocosnet_tf.config import RuntimeConfig

_current: ContextVar[RuntimeConfig] = ContextVar("runtime", default=RuntimeConfig())


@contextmanager
def runtime_settings(runtime: RuntimeConfig):
    """Layers made inside the block run with `runtime`."""
    token = _current.set(runtime)
    try:
        yield
    finally:
        _current.reset(token)


def current_runtime() -> RuntimeConfig:
    return _current.get()
