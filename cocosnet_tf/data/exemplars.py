"""Exemplar choice: pair lists (the official `target,ref1,ref2,...` format), geometric
pseudo-pairs of the target itself, or another random image of the dataset."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cocosnet_tf.fileio import DataError, atomic_write_text

if TYPE_CHECKING:  # the configuration imports the data kinds, which import this module
    from cocosnet_tf.config import ExemplarConfig


def normalise_key(path: str) -> str:
    """Pair lists written on Windows use backslashes (the official DeepFashion ones do)."""
    return path.strip().replace("\\", "/")


def read_pair_list(path: str, root: str | None = None, resolve=None) -> dict[str, list[str]]:
    """Parse `target,ref1[,ref2...]` lines into {target: [refs]}.

    `resolve` maps each entry to a key relative to `root` (the official ADE20K lists
    name bare file names). With `root`, every target and reference must exist under it;
    the error lists the missing ones with their line numbers.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: pair list does not exist")
    pairs: dict[str, list[str]] = {}
    missing: list[str] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = [normalise_key(x) for x in line.split(",") if x.strip()]
            if resolve is not None:
                fields = [resolve(x) for x in fields]
            if len(fields) < 2:
                raise DataError(f"{path}:{number}: expected 'target,reference[,reference...]', got {line.strip()!r}")
            if root is not None:
                missing += [f"line {number}: {p}" for p in fields if not os.path.isfile(os.path.join(root, p))]
            pairs[fields[0]] = fields[1:]
    if missing:
        shown = "; ".join(missing[:5]) + (f"; ... {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{path}: {len(missing)} listed files do not exist under {root}: {shown}")
    if not pairs:
        raise DataError(f"{path}: pair list is empty")
    return pairs


def write_pair_list(path: str, pairs: dict[str, list[str]]) -> None:
    atomic_write_text(path, "".join(f"{t},{','.join(refs)}\n" for t, refs in pairs.items()))


@dataclass(frozen=True)
class ExemplarChoice:
    """What `ExemplarPicker.pick` decided for one sample."""

    pseudo: bool  # a geometric warp of the target itself
    key: str | None = None  # otherwise: the exemplar's key
    self_ref: bool = False


class ExemplarPicker:
    def __init__(self, config: ExemplarConfig, keys: list[str], pairs: dict[str, list[str]] | None = None,
                 pairs_are_self_ref: bool = False, training: bool = True):
        self.config = config
        # evaluation uses the real exemplars only (the official test phase does too)
        self.pseudo_probability = config.pseudo_probability if training else 0.0
        self.keys = keys
        self.pairs = pairs
        self.pairs_are_self_ref = pairs_are_self_ref
        if config.mode == "pair_list":
            if pairs is None:
                raise ValueError("pair_list mode needs a pair list")
            absent = [k for k in keys if k not in pairs]
            if absent:
                raise DataError(f"{len(absent)} targets have no line in the pair list, e.g. {absent[:3]}")
        if config.mode == "random" and len(keys) < 2:
            raise DataError("exemplar mode 'random' needs at least two images")

    def pick(self, key: str, rng: np.random.Generator) -> ExemplarChoice:
        c = self.config
        if c.mode == "pseudo" or rng.uniform() < self.pseudo_probability:
            return ExemplarChoice(pseudo=True, self_ref=True)
        if c.mode == "random":
            other = self.keys[int(rng.integers(len(self.keys) - 1))]
            if other == key:
                other = self.keys[-1]
            return ExemplarChoice(pseudo=False, key=other, self_ref=False)
        refs = self.pairs[key]
        ref = {"first": refs[0], "last": refs[-1]}.get(c.pair_choice) or refs[int(rng.integers(len(refs)))]
        return ExemplarChoice(pseudo=False, key=ref, self_ref=self.pairs_are_self_ref)
