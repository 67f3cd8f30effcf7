import json
import math
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from kelp.metrics import Counts, MetricAccumulator


def _sklearn(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """scikit-learn's kelp-class metrics with the module's empty-denominator convention."""
    y_pred, y_true = pred.ravel().astype(int), truth.ravel().astype(int)
    zero_division = 1.0 if not (y_pred.any() or y_true.any()) else 0.0
    kw: dict[str, Any] = {"zero_division": zero_division}
    return {
        "dice": f1_score(y_true, y_pred, **kw),
        "iou": jaccard_score(y_true, y_pred, **kw),
        "precision": precision_score(y_true, y_pred, **kw),
        "recall": recall_score(y_true, y_pred, **kw),
    }


def _assert_matches_sklearn(counts: Counts, pred: np.ndarray, truth: np.ndarray) -> None:
    for name, expected in _sklearn(pred, truth).items():
        assert getattr(counts, name) == pytest.approx(expected, rel=1e-12, abs=0), name


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("p_pred", "p_truth"), [(0.5, 0.5), (0.05, 0.1), (0.01, 0.002)])
def test_counts_match_sklearn(seed: int, p_pred: float, p_truth: float) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.random((64, 64)) < p_truth
    # correlate pred with truth so tp, fp and fn are all exercised
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.random(truth.shape) < p_pred)
    counts = Counts.from_arrays(pred, truth)
    assert counts.n_pixels == truth.size
    assert counts.tp == np.sum(pred & truth)
    assert counts.fp == np.sum(pred & ~truth)
    assert counts.fn == np.sum(~pred & truth)
    _assert_matches_sklearn(counts, pred, truth)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_many_tiles_equals_pooled(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_tiles = 50
    # a spread of kelp densities, including tiles with no kelp at all
    density = rng.choice([0.0, 0.001, 0.02, 0.2], size=(n_tiles, 1, 1))
    truth = rng.random((n_tiles, 16, 16)) < density
    pred = np.where(rng.random(truth.shape) < 0.8, truth, rng.random(truth.shape) < density)
    acc = MetricAccumulator()
    for i in range(n_tiles):
        acc.update(pred[i], truth[i].astype(np.uint8), tile_id=f"T{i:03d}")

    pooled = Counts.from_arrays(pred, truth)
    assert acc.global_counts == pooled
    assert sum((c for _, c in acc.per_tile), Counts()) == pooled
    assert [tile_id for tile_id, _ in acc.per_tile] == [f"T{i:03d}" for i in range(n_tiles)]
    _assert_matches_sklearn(acc.global_counts, pred, truth)


def _three_tiles() -> MetricAccumulator:
    """Tile a: 1 kelp px found (Dice 1); b: 3 kelp px missed (Dice 0); c: no kelp at all."""
    acc = MetricAccumulator()
    a_truth = np.zeros((4, 4), dtype=bool)
    a_truth[0, 0] = True
    b_truth = np.zeros((4, 4), dtype=bool)
    b_truth[1, :3] = True
    acc.update(a_truth, a_truth, tile_id="a")
    acc.update(np.zeros((4, 4), dtype=bool), b_truth, tile_id="b")
    acc.update(np.zeros((4, 4), dtype=bool), np.zeros((4, 4), dtype=bool), tile_id="c")
    return acc


def test_global_dice_differs_from_mean_per_tile_dice() -> None:
    acc = _three_tiles()
    assert acc.global_counts == Counts(tp=1, fp=0, fn=3, tn=44)
    assert acc.global_counts.dice == 0.4  # 2·1 / (2·1 + 0 + 3)
    assert acc.per_tile_dice() == 2 / 3  # (1 + 0 + 1) / 3, the empty tile scores 1
    assert acc.per_tile_dice(empty=0.0) == 1 / 3
    assert acc.per_tile_dice(empty=float("nan")) == 0.5  # empty tile left out


def test_summary_is_flat_and_json_ready() -> None:
    summary = _three_tiles().summary()
    assert summary == {
        "tp": 1,
        "fp": 0,
        "fn": 3,
        "tn": 44,
        "n_pixels": 48,
        "dice": 0.4,
        "iou": 0.25,
        "precision": 1.0,
        "recall": 0.25,
        "mean_tile_dice": 2 / 3,
        "n_tiles": 3,
    }
    assert all(type(v) in (int, float) for v in summary.values())
    assert json.loads(json.dumps(summary)) == summary


def test_summary_without_tiles_raises() -> None:
    with pytest.raises(ValueError, match=r"call update\(pred, truth\) before summary"):
        MetricAccumulator().summary()


def test_per_tile_dice_nan_when_no_tile_counts() -> None:
    acc = MetricAccumulator()
    assert math.isnan(acc.per_tile_dice())
    acc.update(np.zeros(5, dtype=bool), np.zeros(5, dtype=bool))
    assert acc.per_tile_dice() == 1.0
    assert math.isnan(acc.per_tile_dice(empty=float("nan")))


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        # both empty: perfect agreement on "no kelp"
        ([0, 0, 0], [0, 0, 0], {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}),
        # kelp missed, nothing predicted: precision has no denominator and scores 0
        ([0, 0, 0], [1, 0, 0], {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}),
        # false alarm on a kelp-free tile: recall has no denominator and scores 0
        ([1, 0, 0], [0, 0, 0], {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}),
        # no pixels at all counts as both empty
        ([], [], {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}),
    ],
)
def test_empty_conventions(pred: list[int], truth: list[int], expected: dict[str, float]) -> None:
    counts = Counts.from_arrays(np.array(pred, dtype=int), np.array(truth, dtype=int))
    assert {name: getattr(counts, name) for name in expected} == expected
    if pred:
        _assert_matches_sklearn(counts, np.array(pred), np.array(truth))


@pytest.mark.parametrize("seed", range(5))
def test_dice_is_harmonic_mean_of_precision_and_recall(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 6))
    for _ in range(50):
        counts = Counts.from_arrays(rng.random(size) < 0.3, rng.random(size) < 0.3)
        p, r = counts.precision, counts.recall
        harmonic = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        assert counts.dice == pytest.approx(harmonic)
        assert counts.iou == pytest.approx(counts.dice / (2 - counts.dice))


def test_valid_mask_ignores_pixels() -> None:
    rng = np.random.default_rng(7)
    pred = rng.random((32, 32)) < 0.3
    truth = rng.random((32, 32)) < 0.3
    valid = rng.random((32, 32)) < 0.6
    counts = Counts.from_arrays(pred, truth, valid=valid)
    assert counts == Counts.from_arrays(pred[valid], truth[valid])
    assert counts.n_pixels == np.count_nonzero(valid)
    _assert_matches_sklearn(counts, pred[valid], truth[valid])

    acc = MetricAccumulator()
    acc.update(pred, truth, tile_id="x", valid=valid.astype(np.uint8))
    assert acc.global_counts == counts


def test_no_valid_pixels_counts_as_empty_tile() -> None:
    ones = np.ones((3, 3), dtype=bool)
    counts = Counts.from_arrays(ones, ~ones, valid=np.zeros((3, 3), dtype=bool))
    assert counts == Counts()
    assert counts.dice == 1.0


def test_counts_add_and_types() -> None:
    big = Counts.from_arrays(np.ones(10, dtype=np.uint8), np.ones(10, dtype=np.int64))
    total = sum([big] * 3, Counts())
    assert total == Counts(tp=30)
    # numpy scalars are accepted at runtime (and stored as Python ints) though not typed so
    from_numpy = Counts(tp=np.int64(2), tn=np.uint8(3))  # type: ignore[arg-type]
    assert all(type(getattr(from_numpy, name)) is int for name in ("tp", "fp", "fn", "tn"))
    huge = Counts(tp=2**62) + Counts(tp=2**62)
    assert huge.tp == 2**63  # Python ints: no int64 overflow when pooling
    assert Counts(tp=1).__add__(1) is NotImplemented


@pytest.mark.parametrize(
    ("pred", "truth", "valid", "error", "match"),
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), None, ValueError, r"pred .* dtype float64"),
        (
            np.zeros((2, 3), int),
            np.zeros((3, 2), int),
            None,
            ValueError,
            r"same shape; got pred \(2, 3\) and truth \(3, 2\)",
        ),
        (
            np.array([0, 2, 1]),
            np.array([0, 1, 1]),
            None,
            ValueError,
            r"pred must hold only 0 and 1.*\[2\]",
        ),
        (
            np.array([0, 1]),
            np.array([-1, 1]),
            None,
            ValueError,
            r"truth must hold only 0 and 1.*\[-1\]",
        ),
        (
            np.array([0.1, 0.9]),
            np.array([0, 1]),
            None,
            ValueError,
            r"pred .* dtype float64.*probs >= 0.5",
        ),
        (
            np.array([0, 1]),
            np.array([0, 1]),
            np.array([True]),
            ValueError,
            r"valid must have the shape of pred and truth \(2,\); got \(1,\)",
        ),
        (
            np.array([0, 1]),
            np.array([0, 1]),
            np.array([0, 3]),
            ValueError,
            r"valid must hold only 0 and 1",
        ),
        (
            np.array(["0", "1"]),
            np.array([0, 1]),
            None,
            ValueError,
            r"pred must be a bool or 0/1 integer",
        ),
    ],
    ids=[
        "float-zeros",
        "shape",
        "pred-2",
        "truth-neg",
        "probabilities",
        "valid-shape",
        "valid-3",
        "strings",
    ],
)
def test_bad_inputs(
    pred: np.ndarray,
    truth: np.ndarray,
    valid: np.ndarray | None,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        Counts.from_arrays(pred, truth, valid)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tp": -1}, ValueError, r"Counts.tp must be >= 0; got -1"),
        ({"fn": 1.5}, TypeError, r"float"),
    ],
)
def test_bad_counts(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Counts(**kwargs)
