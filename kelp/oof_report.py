"""The out-of-fold report: global Dice per model, nested, at 0.5 and at its best threshold.

Dice is pooled over every pixel of every out-of-fold tile (the competition's metric), per
fold and over all folds. The headline is the **nested** figure: each fold is scored at the
threshold that is best on the *other* folds' pooled counts, and the folds' counts are then
pooled, so no threshold that scores a fold was chosen on it. The in-sample "best threshold"
figure (chosen on the very counts it is reported on, optimistic) is shown beside it, as
such. Precision, recall and IoU are reported beside Dice.
"""

import csv
import functools
import json
import operator
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kelp._files import atomic_path
from kelp.metrics import Counts
from kelp.thresholds import ThresholdCounts

__all__ = ["REPORT_COLUMNS", "build_report", "nested_entry", "write_report"]

REPORT_COLUMNS = (
    "model", "fold", "n_tiles", "rule", "threshold", "dice", "precision", "recall", "iou",
    "tp", "fp", "fn", "tn",
)  # fmt: skip


def _entry(counts: ThresholdCounts) -> dict[str, Any]:
    threshold, best = counts.best()
    return {
        "n_tiles": counts.n_tiles,
        "at_0.5": {"threshold": 0.5, **counts.at(0.5).as_dict()},
        "best": {"threshold": threshold, **best.as_dict()},
    }


def nested_entry(by_fold: Mapping[int, ThresholdCounts]) -> dict[str, Any] | None:
    """Pooled counts with each fold scored at the threshold best on the other folds.

    Returns:
        ``{"thresholds": {fold: t}, **counts and metrics}``, or ``None`` with fewer than two
        folds (nothing to choose on).
    """
    folds = sorted(by_fold)
    if len(folds) < 2:
        return None
    pooled: Counts | None = None
    chosen = {}
    for fold in folds:
        others = [by_fold[f] for f in folds if f != fold]
        threshold, _ = functools.reduce(operator.add, others).best()
        chosen[str(fold)] = threshold
        counts = by_fold[fold].at(threshold)
        pooled = counts if pooled is None else pooled + counts
    assert pooled is not None
    return {"thresholds": chosen, **pooled.as_dict()}


def build_report(counts: Mapping[str, Mapping[int, ThresholdCounts]]) -> dict[str, Any]:
    """Summarise per-fold threshold counts.

    Args:
        counts: ``{model: {fold: counts}}``; a model without folds is listed as empty.

    Returns:
        ``{"metric": ..., "models": {model: {"folds": [k...], "nested": nested,
        "overall": entry, "per_fold": {k: entry}}}}`` where an entry holds ``n_tiles``,
        ``at_0.5`` and ``best`` (threshold + counts and metrics) and ``nested`` is
        :func:`nested_entry`.
    """
    models: dict[str, Any] = {}
    for name, by_fold in counts.items():
        folds = sorted(by_fold)
        if not folds:
            models[name] = {"folds": [], "nested": None, "overall": None, "per_fold": {}}
            continue
        total = by_fold[folds[0]]
        for fold in folds[1:]:
            total = total + by_fold[fold]
        models[name] = {
            "folds": folds,
            "nested": nested_entry(by_fold),
            "overall": _entry(total),
            "per_fold": {str(f): _entry(by_fold[f]) for f in folds},
        }
    return {
        "metric": "global Dice of the kelp class over every pixel of the out-of-fold tiles; "
        "a pixel is kelp when P(kelp) >= threshold; nested = each fold at the threshold "
        "best on the other folds, pooled",
        "models": models,
    }


def _rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, model in report["models"].items():
        entries = [(str(f), e) for f, e in model["per_fold"].items()]
        if model["overall"] is not None:
            entries.append(("all", model["overall"]))
        for fold, entry in entries:
            for rule in ("at_0.5", "best"):
                values = entry[rule]
                rows.append(
                    {
                        "model": name,
                        "fold": fold,
                        "n_tiles": entry["n_tiles"],
                        "rule": rule,
                        **{c: values[c] for c in REPORT_COLUMNS[4:]},
                    }
                )
        nested = model.get("nested")
        if nested is not None:
            rows.append(
                {
                    "model": name,
                    "fold": "all",
                    "n_tiles": model["overall"]["n_tiles"],
                    "rule": "nested",
                    **{c: nested.get(c, "per fold") for c in REPORT_COLUMNS[4:]},
                }
            )
    return rows


def write_report(folder: str | os.PathLike[str], report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.csv`` (one row per model, fold and rule).

    Returns:
        The two paths.
    """
    folder = Path(folder)
    json_path, csv_path = folder / "report.json", folder / "report.csv"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        for row in _rows(report):
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})
    return json_path, csv_path
