"""The random streams of a run: one seed, independent generators, so changing one never moves the others."""

from __future__ import annotations

import numpy as np

STREAMS = ("init", "split", "shuffle", "dropout")  # append new streams at the end: earlier ones keep their numbers


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for weight initialisation, the validation split, shuffling and dropout masks."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}
