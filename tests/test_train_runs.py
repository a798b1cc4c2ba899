"""The training job as real processes: stop and resume, several workers.

Each run is a tiny model for a few steps; the tests compare final weights, which must
not depend on how the work was split or interrupted.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from conftest import save_run
from cocosnet_tf.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.crop_size=[64,64]", "model.nef=4", "model.ngf=4", "model.ndf=4", "model.corr_levels=2",
        "model.patchmatch_iterations=1", "train.batch_size=2", "train.log_every=1",
        "train.sample_every=100000", "train.checkpoint_every=100000", "data.synthetic.num_samples=64"]


def start(run_dir, *overrides, resume=False, env=None):
    args = [sys.executable, "-m", "cocosnet_tf.train", "--run-dir", str(run_dir), "--set", *TINY, *overrides]
    if resume:
        args = args[:args.index("--set")] + ["--resume", "--set", *overrides]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen(args, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(process, timeout=900) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return out


def fingerprint(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("weights fingerprint:")]
    assert len(lines) == 1, output[-2000:]
    return lines[0].split(":", 1)[1].strip()


def checkpoint_values(run_dir) -> dict:
    path = tf.train.latest_checkpoint(str(Path(run_dir) / "checkpoints"))
    assert path is not None, f"no checkpoint in {run_dir}"
    reader = tf.train.load_checkpoint(path)
    # save_counter counts this run's saves, not training state
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if not name.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"))}


def assert_close(a: dict, b: dict, tolerance: float) -> None:
    """Every saved value (weights, optimiser moments, counters) within `tolerance`,
    relative to the value's scale where that exceeds 1 (Adam's second moments)."""
    assert a.keys() == b.keys()
    gaps = sorted(((float(np.max(np.abs(a[k].astype(np.float64) - b[k])) / max(1.0, float(np.max(np.abs(b[k])))))
                    if a[k].size else 0.0, k) for k in a), reverse=True)
    assert gaps[0][0] <= tolerance, f"{sum(g > tolerance for g, _ in gaps)} of {len(gaps)} differ: {gaps[:5]}"


# the demo's flow loss and kernels; a constant learning rate, because the runs compared
# here are configured with different train.steps (the decay follows train.steps)
SUPERVISED = ("losses.flow=10", "runtime.deterministic=true", "train.decay_steps=0")


def test_sigterm_saves_and_resuming_equals_an_uninterrupted_run(tmp_path):
    total = 6
    # the uninterrupted run trains alongside the interrupted one (tracing dominates both)
    straight = start(tmp_path / "b", f"train.steps={total}", *SUPERVISED)
    interrupted = start(tmp_path / "a", "train.steps=1000", *SUPERVISED)
    for line in interrupted.stdout:
        if line.startswith("step 2/"):
            interrupted.send_signal(signal.SIGTERM)
            break
    out = finish(interrupted)
    assert "signal 15" in out
    stopped = int(checkpoint_values(tmp_path / "a")["step/.ATTRIBUTES/VARIABLE_VALUE"])
    assert 2 <= stopped < total, f"SIGTERM after step 2 stopped at step {stopped}"
    straight_out = finish(straight)
    resumed = finish(start(tmp_path / "a", f"train.steps={total}", resume=True))
    assert "resumed from" in resumed and f"step {total}/{total}" in resumed
    a, b = checkpoint_values(tmp_path / "a"), checkpoint_values(tmp_path / "b")
    assert int(a["step/.ATTRIBUTES/VARIABLE_VALUE"]) == total
    # weights, both optimisers' moments and step counts, spectral-norm vectors: all equal
    assert_close(a, b, 0.0)
    assert fingerprint(resumed) == fingerprint(straight_out)
    heldout = json.loads((tmp_path / "a" / "heldout.json").read_text())
    assert np.isfinite(heldout["epe_finest"]) and heldout["pixels"] > 0
    for key in ("epe_ratio", "epe_flow_heads_zeroed", "refinement_gain", "psnr_gain", "colour_ratio"):
        assert np.isfinite(heldout[key]), key


def test_resume_finds_a_checkpoint_its_state_file_does_not_name_and_keeps_the_newest(tmp_path):
    """A run stopped after writing its first checkpoint but before the `checkpoint` state
    file resumes from it; the resumed run then keeps train.keep_checkpoints, that one
    included in the count."""
    run_dir = tmp_path / "run"
    config = load_config(str(REPO / "configs" / "demo.yaml"), TINY)
    save_run(config, run_dir)  # ckpt-1, at step 1
    (run_dir / "checkpoints" / "checkpoint").unlink()
    out = finish(start(run_dir, "train.steps=4", "train.checkpoint_every=1", "train.keep_checkpoints=2",
                       resume=True))
    assert f"resumed from {run_dir / 'checkpoints' / 'ckpt-1'} at step 1" in out
    assert "step 4/4" in out
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index", "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")) == str(run_dir / "checkpoints" / "ckpt-4")


def test_two_runs_with_determinism_end_with_identical_weights(tmp_path):
    """The demo's networks (three levels, two PatchMatch iterations, its widths) and
    training, two runs side by side, each slowing the other down at other moments. The
    widths matter: 4-channel networks agree even where the demo's do not."""
    shape = ("train.steps=3", "model.corr_levels=3", "model.patchmatch_iterations=2", "model.nef=16",
             "model.ngf=16", "model.ndf=16", "model.spade_hidden=32")
    runs = [start(tmp_path / name, *shape, *SUPERVISED) for name in ("a", "b")]
    outputs = [finish(run) for run in runs]
    assert fingerprint(outputs[0]) == fingerprint(outputs[1])
    assert_close(checkpoint_values(tmp_path / "a"), checkpoint_values(tmp_path / "b"), 0.0)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_replicas_match_one_device_and_two_workers_end_identical(tmp_path):
    """Two replicas (logical CPUs) end where one device does, with the same global batch;
    two worker processes (each reading its own shard of the data) end identical.

    In float64: in float32 one device and two replicas differ by up to 2 lr after one
    step, because conv biases followed by an instance norm have a gradient that is zero
    in exact arithmetic and rounding noise in practice, which Adam's normalised step
    turns into +-lr whatever its size (and rounding can flip PatchMatch's top-K)."""
    common = ("train.steps=3", "train.mixed_precision=float64")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    processes = {
        "one": start(tmp_path / "one", *common),
        "replicas": start(tmp_path / "replicas", *common, "train.logical_cpus=2"),
        **{f"worker{i}": start(tmp_path / "workers", *common, env={
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
           for i in range(2)},
    }
    outputs = {name: finish(p) for name, p in processes.items()}
    assert "replicas: 1" in outputs["one"]
    assert all("replicas: 2" in outputs[name] for name in ("replicas", "worker0", "worker1"))
    assert fingerprint(outputs["worker0"]) == fingerprint(outputs["worker1"])
    assert not any(p.name.startswith(".worker") for p in (tmp_path / "workers").iterdir())
    one = checkpoint_values(tmp_path / "one")
    assert one["step/.ATTRIBUTES/VARIABLE_VALUE"] == 3
    # weights, both optimisers' moments, spectral-norm vectors
    assert_close(checkpoint_values(tmp_path / "replicas"), one, 1e-5)
    assert checkpoint_values(tmp_path / "workers")["step/.ATTRIBUTES/VARIABLE_VALUE"] == 3
