"""CoCosNet trained the Keras way, by a user's script (tests/keras_fit.py) in processes of
its own: `compile()` and `fit` on two logical CPU replicas, with Keras' TensorBoard and
BackupAndRestore callbacks."""

import os
import subprocess
import sys

import tensorflow as tf

from test_train_runs import REPO, TINY, assert_close, checkpoint_values, finish, start

# the learning rates decay over train.steps (demo.yaml's train.decay_steps), so both sides
# are configured with the steps they train
COMMON = ("train.mixed_precision=float64", "train.steps=3")
# the training state a checkpoint of the model and both optimisers holds
STATE = ("model/", "g_optimizer/", "d_optimizer/")


def keras_fit(tmp_path, name, *args):
    """tests/keras_fit.py writing TMP/NAME/final and TMP/NAME/logs, backing up in TMP/NAME/backup."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    folder = tmp_path / name
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "keras_fit.py"), "--out", str(folder / "final"),
         "--backup", str(folder / "backup"), "--logs", str(folder / "logs"), *args, "--set", *TINY, *COMMON],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def state(prefix) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(str(prefix))
            if name.startswith(STATE)}


def scalar_tags(folder) -> set:
    events = [p for p in folder.rglob("events.out.tfevents.*")]
    assert events, f"no TensorBoard events under {folder}"
    return {value.tag for path in events for record in tf.data.TFRecordDataset(str(path))
            for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value}


def test_fit_on_two_replicas_ends_where_the_training_command_does(tmp_path):
    """Three steps in float64: the command on one device, fit on two replicas reading the
    same stream (Keras splits each global batch over them)."""
    command = start(tmp_path / "command", *COMMON)
    user = keras_fit(tmp_path, "fit", "--steps-per-epoch", "3")
    out = finish(user)
    assert "epochs run: 1" in out, out[-3000:]
    finish(command)
    ours = state(tmp_path / "fit" / "final")
    theirs = {k: v for k, v in checkpoint_values(tmp_path / "command").items() if k.startswith(STATE)}
    assert any(k.startswith("d_optimizer/") for k in ours) and any("/u/" in k for k in ours)
    # weights, both optimisers' moments and step counts, spectral-norm vectors
    assert_close(ours, theirs, 1e-5)
    assert {"epoch_G_total", "epoch_D_real", "epoch_D_fake"} <= scalar_tags(tmp_path / "fit" / "logs")


def test_backup_and_restore_resumes_fit_where_it_stopped(tmp_path):
    """Epochs of one step, each on the data's first batch (BackupAndRestore restores the
    state and the epoch, not the data's position): stopped before the third, the job run
    again resumes at the third and ends where an uninterrupted one does."""
    epochs = ("--epochs", "3", "--steps-per-epoch", "1", "--one-batch")
    straight = keras_fit(tmp_path, "straight", *epochs)
    first = keras_fit(tmp_path, "resumed", *epochs, "--interrupt-at", "2")
    assert "interrupted before epoch 2" in finish(first)
    assert (tmp_path / "resumed" / "backup" / "latest.weights.h5").is_file()
    resumed = finish(keras_fit(tmp_path, "resumed", *epochs))
    assert "epochs run: 1" in resumed, resumed[-3000:]
    assert "epochs run: 3" in finish(straight)
    a, b = state(tmp_path / "resumed" / "final"), state(tmp_path / "straight" / "final")
    assert int(a["g_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == 3
    assert_close(a, b, 0.0)
    assert not (tmp_path / "resumed" / "backup").exists()  # deleted once fit completes
