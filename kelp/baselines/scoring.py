"""The figures of one baseline, from its folds' counts and its fold models' test maps.

Out-of-fold: nested Dice (:func:`kelp.oof_report.nested_entry`, each fold at the threshold
best on the other folds) and, beside it, the in-sample best of the pooled counts. Test: the
fold ensemble (the mean of the k fold models' probabilities) at the pooled out-of-fold
threshold, chosen on train tiles only.
"""

import functools
import operator
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kelp.baselines.models import Baseline
from kelp.data.catalog import TileRecord
from kelp.data.io import read_mask
from kelp.oof_report import nested_entry
from kelp.thresholds import ThresholdCounts

__all__ = ["summarise"]


def summarise(
    model: Baseline,
    folds: dict[int, dict[str, Any]],
    folder: Path,
    test: Mapping[str, tuple[TileRecord, Path]],
) -> dict[str, Any]:
    """One baseline's entry of ``baselines.json``.

    Args:
        model: the baseline (its name, whether it fits, its parameters).
        folds: per fold, the record its ``fold.json`` holds (``counts``, ``rounds``, ...).
        folder: ``OUT/<baseline>``, whose ``fold=<k>/test.npz`` hold the test maps.
        test: test tiles with truth, ``{tile_id: (record, mask path)}``.

    Returns:
        ``{"oof_nested", "oof_in_sample", "threshold", "test", "test_tiles", "per_fold",
        "seconds", "rounds", "params"}``.
    """
    by_fold = {k: ThresholdCounts.from_dict(r["counts"]) for k, r in folds.items()}
    nested = nested_entry(by_fold)
    threshold, pooled = functools.reduce(operator.add, by_fold.values()).best()
    started = time.perf_counter()
    test_dice = _test_dice(folder, sorted(folds), test, threshold)
    per_fold = {}
    for k, record in folds.items():
        best_t, best = by_fold[k].best()
        chosen = nested["thresholds"][str(k)] if nested is not None else None
        per_fold[str(k)] = {
            "n_tiles": by_fold[k].n_tiles,
            "nested_threshold": chosen,
            "dice_nested": by_fold[k].at(chosen).dice if chosen is not None else None,
            "best_threshold": best_t,
            "dice_in_sample": best.dice,
            "rounds": record["rounds"],
            "seconds": record["seconds"],
            "early_stopping": record.get("early_stopping"),
        }
    seconds = sum(r["seconds"] for r in folds.values()) + time.perf_counter() - started
    return {
        "oof_nested": nested["dice"] if nested is not None else None,
        "oof_in_sample": pooled.dice,
        "threshold": threshold,
        "test": test_dice,
        "test_tiles": len(test),
        "per_fold": per_fold,
        "seconds": round(seconds, 3),
        "rounds": {str(k): r["rounds"] for k, r in folds.items()} if model.needs_fit else None,
        "params": model.params(),
    }


def _test_dice(
    folder: Path,
    folds: Sequence[int],
    test: Mapping[str, tuple[TileRecord, Path]],
    threshold: float,
) -> float | None:
    """Global Dice of the fold ensemble (mean probability) on the test tiles at
    ``threshold``; ``None`` without test truth."""
    if not test:
        return None
    counts = ThresholdCounts()
    stores = [np.load(folder / f"fold={k}" / "test.npz") for k in folds]
    try:
        for tile_id, (_, mask_path) in test.items():
            prob = np.mean([s[tile_id].astype(np.float32) for s in stores], axis=0)
            counts.update(prob, read_mask(mask_path))
    finally:
        for store in stores:
            store.close()
    return counts.at(threshold).dice
