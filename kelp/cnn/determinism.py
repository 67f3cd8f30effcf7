"""Reproducible training: seeding, deterministic algorithms and the global RNG states.

Our own randomness (augmentation, the epoch sampler, the inner split) uses explicit
generators; the global Python, numpy and torch generators are seeded per fold for any
library code that draws from them (weight initialisation, above all), and saved with a
``last`` checkpoint so that a resumed fold draws exactly what an uninterrupted one would.
"""

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["deterministic", "rng_states", "seed_everything", "set_rng_states"]


def seed_everything(seed: int) -> None:
    """Seed the global Python, numpy and torch generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic torch algorithms on CPU for the duration, restored afterwards."""
    if device.type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def rng_states() -> dict[str, Any]:
    """The global generators' states, for :func:`set_rng_states`."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
