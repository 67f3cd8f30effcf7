"""The nested figure of the OOF report: each fold at the threshold best on the other folds."""

import numpy as np
import pytest

from kelp.oof_report import build_report, nested_entry
from kelp.thresholds import ThresholdCounts


def _fold(prob: list[float], truth: list[int]) -> ThresholdCounts:
    counts = ThresholdCounts()
    counts.update(np.array([prob]), np.array([truth]))
    return counts


def test_each_fold_is_scored_at_the_threshold_of_the_others() -> None:
    # Fold 0 separates kelp at 0.3 (kelp 0.35, water 0.25), fold 1 at 0.7 (kelp 0.75,
    # water 0.65): each is perfect at its own threshold and wrong at the other's.
    by_fold = {0: _fold([0.35, 0.25], [1, 0]), 1: _fold([0.75, 0.65], [1, 0])}
    t0, best0 = by_fold[0].best()
    t1, best1 = by_fold[1].best()
    assert best0.dice == best1.dice == 1.0
    nested = nested_entry(by_fold)
    assert nested is not None
    assert nested["thresholds"] == {"0": t1, "1": t0}
    expected = by_fold[0].at(t1) + by_fold[1].at(t0)
    assert nested["dice"] == pytest.approx(expected.dice)
    assert nested["dice"] < (by_fold[0] + by_fold[1]).best()[1].dice  # in-sample is optimistic
    report = build_report({"m": by_fold})
    assert report["models"]["m"]["nested"] == nested


def test_one_fold_has_no_nested_figure() -> None:
    assert nested_entry({0: _fold([0.9], [1])}) is None
    assert build_report({"m": {}})["models"]["m"]["nested"] is None
