"""Turn a fused probability map into a mask, and choose how on out-of-fold data.

A :class:`Decision` is a threshold, an optional DEM land mask, an optional 3x3 opening or
closing, and a minimum connected-component area (8-connected). :class:`Sweep` scores every
combination of a grid on out-of-fold maps by global Dice from streamed counts: per tile and
threshold, components are labelled once and every minimum area is scored from the
components' sizes and their kelp pixels, so the grid costs a few labellings per tile.
"""

import csv
import itertools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from kelp._files import atomic_path
from kelp.metrics import Counts
from kelp.stacking.config import PostprocessConfig

__all__ = [
    "SWEEP_COLUMNS",
    "Decision",
    "Sweep",
    "coarse_grid",
    "decision_record",
    "fine_grid",
    "pool",
    "rank",
]

Morphology = Literal["none", "open", "close"]
SWEEP_COLUMNS = (
    "threshold", "min_area", "land_mask", "morphology", "dice", "precision", "recall",
    "tp", "fp", "fn",
)  # fmt: skip
_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class Decision:
    """How a probability map becomes a mask.

    Attributes:
        threshold: a pixel is kelp when its probability is >= this.
        land_mask: drop pixels with a valid DEM > 0.
        min_area: drop 8-connected components smaller than this many pixels.
        morphology: a 3x3 opening or closing before the area filter.
    """

    threshold: float = 0.5
    land_mask: bool = False
    min_area: int = 0
    morphology: Morphology = "none"

    def apply(self, prob: np.ndarray, land: np.ndarray | None) -> np.ndarray:
        """``(H, W) uint8`` mask from ``(H, W)`` probabilities and the land mask."""
        mask = _binary(prob, self.threshold, self.land_mask, land, self.morphology)
        if self.min_area > 1:
            labels, n = ndimage.label(mask, _EIGHT)
            if n:
                sizes = np.bincount(labels.ravel())
                keep = sizes >= self.min_area
                keep[0] = False
                mask = keep[labels]
        return mask.astype(np.uint8)


def _binary(
    prob: np.ndarray,
    threshold: float,
    land_mask: bool,
    land: np.ndarray | None,
    morphology: Morphology,
) -> np.ndarray:
    mask = prob >= threshold
    if land_mask and land is not None:
        mask &= ~land
    if morphology == "open":
        mask = ndimage.binary_opening(mask, _EIGHT)
    elif morphology == "close":
        mask = ndimage.binary_closing(mask, _EIGHT)
    return mask


def coarse_grid(step: float) -> list[float]:
    """Thresholds ``step, 2 step, ...`` below 1."""
    return [round(t, 4) for t in np.arange(step, 1 - 1e-9, step)]


def fine_grid(centre: float, coarse_step: float, fine_step: float) -> list[float]:
    """Thresholds within one coarse step of ``centre``, ``fine_step`` apart, in (0, 1)."""
    grid = np.arange(centre - coarse_step, centre + coarse_step + 1e-9, fine_step)
    return [round(t, 4) for t in grid if 0 < t < 1]


class Sweep:
    """Streamed global-Dice counts for every decision of a grid.

    Args:
        thresholds: thresholds to score.
        config: land-mask, morphology and minimum-area choices.
    """

    def __init__(self, thresholds: Sequence[float], config: PostprocessConfig) -> None:
        self.thresholds = list(thresholds)
        self.min_areas = sorted(set(config.min_areas))
        self.land_masks = list(dict.fromkeys(config.land_mask))
        self.morphologies = list(dict.fromkeys(config.morphology))
        self.counts: dict[Decision, Counts] = {}

    def update(self, prob: np.ndarray, truth: np.ndarray, land: np.ndarray) -> None:
        """Add one tile: ``(H, W)`` probabilities, 0/1 truth and land mask."""
        kelp = truth.astype(bool)
        n_true = int(kelp.sum())
        n = kelp.size
        areas = np.array(self.min_areas)
        for t, land_mask, morph in itertools.product(
            self.thresholds, self.land_masks, self.morphologies
        ):
            mask = _binary(prob, t, land_mask, land, morph)
            labels, n_comp = ndimage.label(mask, _EIGHT)
            sizes = np.bincount(labels.ravel(), minlength=n_comp + 1)[1:]
            hits = np.bincount(labels[kelp], minlength=n_comp + 1)[1:]
            # pixels in components of size >= a, for every minimum area a at once
            kept = sizes[None, :] >= np.maximum(areas, 1)[:, None]
            predicted = (kept * sizes).sum(axis=1)
            tp = (kept * hits).sum(axis=1)
            for a, p, h in zip(self.min_areas, predicted.tolist(), tp.tolist(), strict=True):
                c = Counts(tp=h, fp=p - h, fn=n_true - h, tn=n - p - (n_true - h))
                key = Decision(float(t), land_mask, a, morph)
                self.counts[key] = self.counts[key] + c if key in self.counts else c

    def ranked(self) -> list[tuple[Decision, Counts]]:
        """Every decision with its counts, best global Dice first (ties: simpler first)."""
        return rank(self.counts)

    def best(self) -> tuple[Decision, Counts]:
        """The decision with the highest global Dice."""
        return self.ranked()[0]

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """The sweep as CSV ranked by Dice (columns :data:`SWEEP_COLUMNS`), atomically."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(SWEEP_COLUMNS)
            for d, c in self.ranked():
                writer.writerow(
                    [d.threshold, d.min_area, d.land_mask, d.morphology, f"{c.dice:.6f}",
                     f"{c.precision:.6f}", f"{c.recall:.6f}", c.tp, c.fp, c.fn]
                )  # fmt: skip
        return path


def rank(counts: dict[Decision, Counts]) -> list[tuple[Decision, Counts]]:
    """Decisions with their counts, best global Dice first (ties: simpler first)."""
    return sorted(
        counts.items(),
        key=lambda kv: (
            -kv[1].dice,
            kv[0].morphology != "none",
            kv[0].land_mask,
            kv[0].min_area,
            abs(kv[0].threshold - 0.5),
        ),
    )


def pool(parts: Sequence[dict[Decision, Counts]]) -> dict[Decision, Counts]:
    """Sum the counts of several sweeps, keeping the decisions all of them scored."""
    common = set.intersection(*(set(p) for p in parts)) if parts else set()
    return {d: sum((p[d] for p in parts[1:]), parts[0][d]) for d in common}


def _metrics(counts: Counts) -> dict[str, float]:
    return {
        "dice": round(counts.dice, 6),
        "precision": round(counts.precision, 6),
        "recall": round(counts.recall, 6),
    }


def decision_record(
    decision: Decision,
    counts: Counts,
    n_tiles: int,
    nested: Counts,
    per_fold: dict[int, tuple[Decision, Counts]],
) -> dict[str, Any]:
    """The chosen decision with its nested and its in-sample figure, JSON-ready.

    Args:
        decision: chosen on every fold's out-of-fold fused maps (what ``kelp predict`` uses).
        counts: its counts on those same maps (in-sample: optimistic).
        n_tiles: tiles it was chosen on.
        nested: pooled counts of each fold under the decision chosen on the other folds.
        per_fold: that decision and the fold's counts, per fold.

    Returns:
        ``dice`` (and ``precision``, ``recall``) is the nested figure, the headline;
        ``in_sample`` holds the optimistic one.
    """
    return {
        **asdict(decision),
        "metric": "global_dice",
        **_metrics(nested),
        "nested": {
            **_metrics(nested),
            "rule": "each fold scored with the decision chosen on the other folds, pooled",
            "per_fold": {
                str(f): {**asdict(d), "dice": round(c.dice, 6)} for f, (d, c) in per_fold.items()
            },
        },
        "in_sample": {
            **_metrics(counts),
            "rule": "the decision's Dice on the same maps it was chosen on (optimistic)",
        },
        "n_tiles": n_tiles,
        "chosen_on": "out-of-fold fused maps",
    }
