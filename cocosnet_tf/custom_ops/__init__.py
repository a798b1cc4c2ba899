"""Compiled TensorFlow ops, built on first use from the C++ sources beside this file.

The library is compiled with the system's C++ compiler ($CXX, else g++, else c++) against
the installed TensorFlow's headers and library (tf.sysconfig), into the cache folder
$COCOSNET_TF_OPS, else $XDG_CACHE_HOME/cocosnet_tf/ops, else ~/.cache/cocosnet_tf/ops,
under a name that digests the sources, the TensorFlow version and the flags: a new
TensorFlow or a changed source builds anew. `python -m cocosnet_tf.custom_ops` builds it
ahead (at install, say) and prints its path.

Every op has a twin in TensorFlow ops (twin.py) that computes the same values and
gradients; the networks use the op only when the config's `runtime.compiled_ops` asks
for it, and fall back to the twin, with a one-line warning, when it cannot be built or
loaded, and inside XLA-compiled functions, where it has no kernel.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import tensorflow as tf


SOURCES = sorted(Path(__file__).parent.glob("*.cc"))
FLAGS = ["-std=c++17", "-shared", "-fPIC", "-O3", "-fopenmp-simd"]


class BuildError(RuntimeError):
    """The compiled ops cannot be built or loaded (one line)."""


def cache_dir() -> Path:
    if os.environ.get("COCOSNET_TF_OPS"):
        return Path(os.environ["COCOSNET_TF_OPS"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cocosnet_tf" / "ops"


def compiler() -> str:
    found = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not found:
        raise BuildError("the compiled ops need a C++ compiler, and none was found ($CXX, g++ or c++ on PATH)")
    return found


def build_command(cxx: str, output: Path) -> list[str]:
    return [cxx, *FLAGS, *map(str, SOURCES), "-o", str(output), *tf.sysconfig.get_compile_flags(),
            *tf.sysconfig.get_link_flags()]


def library_path(cxx: str) -> Path:
    digest = hashlib.sha256()
    for source in SOURCES:
        digest.update(source.read_bytes())
    digest.update(" ".join([tf.__version__, sys.platform, *build_command(cxx, Path("out"))]).encode())
    return cache_dir() / f"cocosnet_ops-{digest.hexdigest()[:16]}.so"


def build() -> Path:
    """The library's path, compiled first unless cached."""
    cxx = compiler()
    path = library_path(cxx)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # compiled beside its final name and renamed: two processes building at once each
    # write their own file, and a reader never sees a half-written library
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        staged = Path(scratch) / path.name
        try:
            done = subprocess.run(build_command(cxx, staged), capture_output=True, text=True)
        except OSError as err:
            raise BuildError(f"the C++ compiler {cxx} cannot run: {err}") from None
        if done.returncode:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:300])
            raise BuildError(f"building the compiled ops with {cxx} failed: {first}")
        os.replace(staged, path)
    return path


@functools.cache
def library():
    """The loaded ops (tf.load_op_library), their gradients registered; BuildError if not."""
    path = build()
    try:
        ops = tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as err:
        raise BuildError(f"loading the compiled ops from {path} failed: {str(err).splitlines()[0]}") from None

    @tf.RegisterGradient("CocosnetCandidateScores")
    def _candidate_scores_gradient(op, grad):
        queries, values, index = op.inputs
        grad_queries, grad_values = ops.cocosnet_candidate_scores_grad(grad, queries, values, index)
        return grad_queries, grad_values, None

    return ops


@functools.cache
def _unavailable() -> str | None:
    """Why the compiled ops cannot be used (warned once), or None."""
    try:
        library()
    except BuildError as err:
        warnings.warn(f"runtime.compiled_ops: {err}; using TensorFlow ops instead", RuntimeWarning, stacklevel=3)
        return str(err)
    return None


def _in_xla() -> bool:
    from tensorflow.python.ops import control_flow_util  # the one public-enough test of an XLA context

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def enabled(compiled: bool) -> bool:
    """Whether the compiled ops run here: `compiled` (runtime.compiled_ops) asks for them,
    they load (else a warning, once) and the graph is not XLA-compiled."""
    return compiled and not _in_xla() and _unavailable() is None


def candidate_scores(queries: tf.Tensor, values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """The compiled op: scores [B, M, K] = <queries [B, M, C], values [B, N, C] at rows
    index [B, M, K]> (twin.candidate_scores); differentiable in queries and values."""
    return library().cocosnet_candidate_scores(queries, values, index)
