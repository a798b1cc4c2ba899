"""Which files in a checkpoint folder form a checkpoint that can be restored.

A checkpoint is PREFIX.index plus its data shards PREFIX.data-NNNNN-of-MMMMM.
TensorFlow writes them before the folder's `checkpoint` state file: a run stopped in
between leaves a complete checkpoint that the state file does not name (or no state file
at all); one stopped while writing them leaves some without the others. So the newest
checkpoint is found from the files themselves, and one is read in full before it is
used, so that a damaged file (a shard shorter than its index says) is one clear error
naming it rather than a failure deep inside a restore.

TensorFlow is imported only to read a checkpoint, so that commands can parse their
arguments and check the folder without it.
"""

from __future__ import annotations

import os
import re

from cocosnet_tf.config import ConfigError
from cocosnet_tf.fileio import atomic_write_text

NUMBERED_INDEX = re.compile(r"-(\d+)\.index$")
DATA_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})")


def data_files(prefix: str) -> list[str]:
    """PREFIX's data shards, in order; [] unless every shard its names promise exists."""
    folder, stem = os.path.split(prefix)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    shards = {}
    for name in names:
        match = DATA_SHARD.fullmatch(name[len(stem):]) if name.startswith(stem) else None
        if match:
            shards[int(match.group(1))] = (int(match.group(2)), os.path.join(folder, name))
    counts = {count for count, _ in shards.values()}
    if len(counts) != 1 or sorted(shards) != list(range(counts.pop())):
        return []
    return [shards[i][1] for i in sorted(shards)]


def is_complete(prefix: str) -> bool:
    return os.path.isfile(prefix + ".index") and bool(data_files(prefix))


def complete_checkpoints(folder: str) -> list[str]:
    """Prefixes of the numbered checkpoints (NAME-N) in `folder` whose index and every
    data shard exist, oldest (lowest N) first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    numbered = []
    for name in names:
        match = NUMBERED_INDEX.search(name)
        prefix = os.path.join(folder, name[: -len(".index")])
        if match and is_complete(prefix):
            numbered.append((int(match.group(1)), prefix))
    return [prefix for _, prefix in sorted(numbered)]


def newest_checkpoint(folder: str) -> str | None:
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def record_state(folder: str) -> None:
    """Rewrite the folder's `checkpoint` state file to name every complete checkpoint,
    newest last. tf.train.CheckpointManager knows only what that file names: a checkpoint
    written just before a run was stopped would otherwise never count towards
    train.keep_checkpoints, nor be what tf.train.latest_checkpoint returns."""
    paths = complete_checkpoints(folder)
    names = [os.path.basename(p) for p in paths]  # relative to the folder, as the manager writes them
    times = [os.path.getmtime(p + ".index") for p in paths]
    # the state's text format; timestamps after last_preserved_timestamp, or the manager
    # would treat them as preserved and never delete them
    lines = ([f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
             + [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
             + [f"last_preserved_timestamp: {min(times) - 1!r}"])
    atomic_write_text(os.path.join(folder, "checkpoint"), "\n".join(lines) + "\n")


def check_readable(prefix: str) -> list[str]:
    """Read every value of the checkpoint at `prefix`; its variable names, or a
    ConfigError naming the file that cannot be read."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise ConfigError(f"{prefix}.index: not a readable checkpoint index ({first_line(err)})") from err
    names = sorted(reader.get_variable_to_shape_map())
    try:
        for name in names:
            reader.get_tensor(name)
    # a shard shorter than the index says surfaces as IndexError ("Read less bytes than
    # requested"), other damage as an OpError (DataLossError) or ValueError
    except (tf.errors.OpError, ValueError, IndexError) as err:
        shards = data_files(prefix)
        where = shards[0] if len(shards) == 1 else f"{prefix}.data-* ({len(shards)} shards)"
        others = [p for p in complete_checkpoints(os.path.dirname(prefix)) if p != prefix]
        raise ConfigError(f"{where}: truncated or damaged, the checkpoint cannot be read ({first_line(err)})"
                          + (f"; the newest other checkpoint is {others[-1]}" if others else "")) from err
    return names


def first_line(err: BaseException, limit: int = 300) -> str:
    text = str(getattr(err, "message", None) or err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]
