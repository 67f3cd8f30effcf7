"""Streamed threshold counts agree with counting each threshold by brute force."""

import numpy as np
import pytest

from kelp.metrics import Counts
from kelp.thresholds import THRESHOLDS, ThresholdCounts


def _tiles(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    tiles = []
    for shape in [(20, 30), (17, 9), (5, 5)]:
        truth = (rng.random(shape) < 0.2).astype(np.uint8)
        prob = np.clip(truth * 0.4 + rng.random(shape) * 0.6, 0, 1).astype(np.float32)
        tiles.append((prob, truth))
    prob, truth = tiles[-1]
    prob[0, :3] = [0.0, 0.5, 1.0]  # exactly on the grid: p >= t counts as kelp
    return tiles


def test_matches_brute_force_at_every_threshold() -> None:
    counts = ThresholdCounts()
    tiles = _tiles()
    for prob, truth in tiles:
        counts.update(prob, truth)
    assert counts.n_tiles == 3
    for t in THRESHOLDS:
        brute = sum((Counts.from_arrays(prob >= t, truth) for prob, truth in tiles), Counts())
        assert counts.at(t) == brute
    threshold, best = counts.best()
    assert best.dice == max(counts.at(t).dice for t in THRESHOLDS)
    assert counts.at(threshold) == best


def test_pooling_and_json_round_trip() -> None:
    a, b, both = ThresholdCounts(), ThresholdCounts(), ThresholdCounts()
    tiles = _tiles(1)
    a.update(*tiles[0])
    b.update(*tiles[1])
    both.update(*tiles[0])
    both.update(*tiles[1])
    pooled = a + b
    assert pooled.n_tiles == 2
    assert all(pooled.at(t) == both.at(t) for t in (0.0, 0.37, 1.0))
    again = ThresholdCounts.from_dict(pooled.to_dict())
    assert again.to_dict() == pooled.to_dict()


def test_tile_without_kelp_and_empty_prediction() -> None:
    counts = ThresholdCounts()
    counts.update(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    assert counts.at(0.5).dice == 1.0  # nothing to find, nothing predicted
    assert counts.at(0.0).fp == 16


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.at(0.505), "not on the grid"),
        (lambda c: c.update(np.zeros((2, 2)), np.zeros((2, 3))), "differ in shape"),
        (lambda c: c + ThresholdCounts([0.5]), "different threshold grids"),
        (lambda c: ThresholdCounts([0.5, 0.2]), "increasing"),
    ],
)
def test_bad_use(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call(ThresholdCounts())
