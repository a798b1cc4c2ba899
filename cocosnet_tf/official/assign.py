"""Setting our variables from official state dicts: every official parameter is used or
explicitly ignored, every variable of ours is set, and anything else is an error that
lists what did not match."""

from __future__ import annotations

import numpy as np

from cocosnet_tf.config import ConfigError
from cocosnet_tf.official import names

LISTED = 40  # problems shown in one error


class ConversionError(ConfigError):
    """Official parameters and our variables do not match."""


def official_shape(entry: names.Entry) -> tuple:
    shape = tuple(entry.variable.shape)
    if entry.layout == "conv" and len(shape) == 4:
        kh, kw, cin, cout = shape
        return (cout, cin, kh, kw)
    return (int(np.prod(shape)),) if entry.layout == "prelu" else shape


def plan(model, states: dict[str, dict[str, np.ndarray]]) -> tuple[list, dict]:
    """([(variable, value)], report) for the networks in `states`; raises ConversionError."""
    by_network = {network: names.entries(model, network) for network in states}
    problems, assignments = [], []
    report = {"assigned": {}, "ignored": {}, "aliases": {}}
    for network, state in states.items():
        covered = {id(entry.variable) for entry in by_network[network]}
        problems += [f"{network}: {v.path} {tuple(v.shape)} has no official parameter"
                     for v in names.network_of(model, network).variables if id(v) not in covered]
        used = set()
        for entry in by_network[network]:
            where = f"{network}: {entry.key}"
            if entry.key not in state:
                problems.append(f"{where} is missing (wanted by {entry.variable.path}, shape {official_shape(entry)})")
                continue
            used.add(entry.key)
            value = names.to_ours(state[entry.key], entry.layout, tuple(entry.variable.shape))
            if value.shape != tuple(entry.variable.shape):
                problems.append(f"{where} has shape {tuple(state[entry.key].shape)}, {entry.variable.path} needs "
                                f"{official_shape(entry)}")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{where} holds non-finite values")
            else:
                assignments.append((entry.variable, value))
        ignored, aliases = [], []
        for key in state:
            if key in used:
                continue
            target = names.alias_of(network, key)
            if names.ignored_reason(network, key):
                ignored.append(key)
            elif target in used:
                if not np.array_equal(state[key], state[target]):
                    problems.append(f"{network}: {key} should repeat {target} (one shared parameter) but differs")
                aliases.append(key)
            else:
                problems.append(f"{network}: {key} {tuple(state[key].shape)} has no variable here to take it")
        report["assigned"][network] = len(used)
        report["ignored"][network] = sorted(ignored)
        report["aliases"][network] = sorted(aliases)
    if problems:
        more = f"\n  ... and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
        raise ConversionError(f"the official checkpoint does not fit this model ({len(problems)} problems):\n  "
                              + "\n  ".join(problems[:LISTED]) + more)
    return assignments, report


def assign(model, states: dict[str, dict[str, np.ndarray]]) -> dict:
    """Set the variables of `model`'s networks in `states` (all checked first, so a
    mismatch changes nothing). Returns the report (keys used, ignored, aliases)."""
    assignments, report = plan(model, states)
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    return report
