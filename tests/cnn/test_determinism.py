"""Seeding and saving the global generators, and deterministic torch algorithms on CPU."""

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from kelp.cnn.determinism import deterministic, rng_states, seed_everything, set_rng_states


@pytest.fixture(autouse=True)
def _keep_global_generators() -> Iterator[None]:
    """Leave the global generators and torch's determinism flag as these tests found them."""
    python, torch_state = random.getstate(), torch.get_rng_state()
    numpy = np.random.get_state()  # noqa: NPY002
    flag = torch.are_deterministic_algorithms_enabled()
    yield
    random.setstate(python)
    np.random.set_state(numpy)  # noqa: NPY002
    torch.set_rng_state(torch_state)
    if torch.are_deterministic_algorithms_enabled() != flag:
        torch.use_deterministic_algorithms(flag)


def _draws() -> tuple[list[float], list[float], list[float]]:
    """A few draws of each global generator."""
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),  # noqa: NPY002
        torch.rand(3).tolist(),
    )


def test_seed_everything_repeats_every_generator() -> None:
    seed_everything(7)
    first = _draws()
    seed_everything(7)
    assert _draws() == first
    seed_everything(8)
    other = _draws()
    assert all(a != b for a, b in zip(first, other))  # each generator follows the seed


def test_seed_everything_accepts_seeds_beyond_numpy_range() -> None:
    seed_everything(2**32 + 5)  # e.g. seed * 1000 + fold for a large seed
    first = _draws()
    seed_everything(2**32 + 5)
    assert _draws() == first


def test_saved_states_restore_the_streams() -> None:
    seed_everything(3)
    _draws()
    states = rng_states()
    ahead = _draws()
    _draws()  # move on, as the rest of an epoch would
    set_rng_states(states)
    assert _draws() == ahead
    set_rng_states(states)  # the saved states are not consumed by restoring them
    assert _draws() == ahead
    assert set(states) == {"python", "numpy", "torch", "cuda"}


def test_deterministic_on_cpu_only_and_restored() -> None:
    torch.use_deterministic_algorithms(False)
    with deterministic(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(RuntimeError), deterministic(torch.device("cpu")):
        raise RuntimeError("a failing fold")
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic(torch.device("cuda")):  # CUDA: left as it is
        assert not torch.are_deterministic_algorithms_enabled()
