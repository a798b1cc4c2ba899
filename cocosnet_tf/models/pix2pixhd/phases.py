"""Which variables each of pix2pixHD's training phases updates.

"global": G1 alone at the coarse size (trained on Pix2PixHDGenerator.coarse), its image
head included. "enhancer": the outermost local enhancer only, G1 and any inner enhancer
frozen (the official first epochs after adding an enhancer, niter_fix_global).
"all": every stage G's output depends on (G1's own image head is not among them when
enhancers follow it). The encoder, when given, trains in every phase, as officially.
"""

from __future__ import annotations

from cocosnet_tf.models.pix2pixhd.generator import Pix2PixHDGenerator

PHASES = ("global", "enhancer", "all")


def phase_variables(generator: Pix2PixHDGenerator, phase: str, encoder=None) -> list:
    """The trainable variables the phase's optimiser steps update (the networks built)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    g1 = generator.global_generator
    if phase == "global":
        variables = list(g1.trainable_variables)
    elif phase == "enhancer":
        if not generator.enhancers:
            raise ValueError("the enhancer phase needs local_enhancers >= 1")
        variables = list(generator.enhancers[-1].trainable_variables)
    elif generator.enhancers:
        head = {id(v) for v in g1.head.trainable_variables}
        variables = [v for v in g1.trainable_variables if id(v) not in head]
        variables += [v for enhancer in generator.enhancers for v in enhancer.trainable_variables]
    else:
        variables = list(g1.trainable_variables)
    return variables + (list(encoder.trainable_variables) if encoder is not None else [])


def phase_at(step: int, local_enhancers: int, global_steps: int, fix_global_steps: int) -> str:
    """The phase training step `step` (0-based) is in: "global" for the first
    global_steps, "enhancer" for the next fix_global_steps, then "all"; always "all"
    without enhancers (G1 then works at the full size)."""
    if not local_enhancers:
        return "all"
    if step < global_steps:
        return "global"
    return "enhancer" if step < global_steps + fix_global_steps else "all"
