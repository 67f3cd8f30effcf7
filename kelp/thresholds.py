"""Confusion counts at every threshold of a grid, streamed tile by tile.

Each tile's probabilities are binned once against the grid (``searchsorted``), and the
counts at every threshold follow from cumulative sums, so choosing the Dice-optimal
threshold over thousands of tiles keeps 4 integers per threshold, never the pixels.
A pixel is predicted kelp at threshold ``t`` when ``p >= t``.
"""

from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from kelp.metrics import Counts

__all__ = ["THRESHOLDS", "ThresholdCounts"]

THRESHOLDS: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(101))
"""The default grid: 0.00, 0.01, ..., 1.00."""


class ThresholdCounts:
    """tp/fp/fn/tn of the kelp class at every threshold of ``thresholds``.

    Args:
        thresholds: increasing thresholds in [0, 1].
    """

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS) -> None:
        grid = np.asarray(thresholds, np.float64)
        if grid.ndim != 1 or not len(grid) or np.any(np.diff(grid) <= 0):
            raise ValueError("thresholds must be a non-empty increasing sequence")
        self.thresholds = grid
        zeros = np.zeros(len(grid), np.int64)
        self.tp, self.fp, self.fn, self.tn = zeros.copy(), zeros.copy(), zeros.copy(), zeros
        self.n_tiles = 0

    def update(self, prob: np.ndarray, truth: np.ndarray) -> None:
        """Add one tile.

        Args:
            prob: ``(H, W)`` P(kelp) in [0, 1].
            truth: ``(H, W)`` 0/1 kelp mask.

        Raises:
            ValueError: shapes differ.
        """
        prob, truth = np.asarray(prob), np.asarray(truth)
        if prob.shape != truth.shape:
            raise ValueError(f"prob {prob.shape} and truth {truth.shape} differ in shape")
        kelp = truth.ravel().astype(bool)
        # bin = index of the highest threshold <= p (-1 below the grid): the pixel is kelp at
        # thresholds 0..bin, so the counts at threshold i sum the bins >= i.
        bins = np.searchsorted(self.thresholds, prob.ravel(), side="right")
        n = len(self.thresholds)
        pos = np.bincount(bins[kelp], minlength=n + 1)[1:]
        neg = np.bincount(bins[~kelp], minlength=n + 1)[1:]
        tp = np.cumsum(pos[::-1])[::-1]
        fp = np.cumsum(neg[::-1])[::-1]
        self.tp += tp
        self.fp += fp
        self.fn += int(kelp.sum()) - tp
        self.tn += int((~kelp).sum()) - fp
        self.n_tiles += 1

    def at(self, threshold: float) -> Counts:
        """Counts at a threshold of the grid.

        Raises:
            ValueError: ``threshold`` is not on the grid.
        """
        hits = np.flatnonzero(np.isclose(self.thresholds, threshold))
        if not len(hits):
            raise ValueError(f"threshold {threshold} is not on the grid")
        return self._counts(int(hits[0]))

    def best(self) -> tuple[float, Counts]:
        """The threshold with the highest global Dice (the lowest such threshold on ties)."""
        dice = [self._counts(i).dice for i in range(len(self.thresholds))]
        i = int(np.argmax(dice))
        return float(self.thresholds[i]), self._counts(i)

    def _counts(self, i: int) -> Counts:
        return Counts(
            tp=int(self.tp[i]), fp=int(self.fp[i]), fn=int(self.fn[i]), tn=int(self.tn[i])
        )

    def __add__(self, other: "ThresholdCounts") -> "ThresholdCounts":
        """Pool two sets of tiles counted on the same grid."""
        if not np.array_equal(self.thresholds, other.thresholds):
            raise ValueError("cannot pool counts made on different threshold grids")
        total = ThresholdCounts(self.thresholds.tolist())
        for name in ("tp", "fp", "fn", "tn"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        total.n_tiles = self.n_tiles + other.n_tiles
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``from_dict`` reads it back)."""
        return {
            "thresholds": self.thresholds.tolist(),
            "n_tiles": self.n_tiles,
            **{name: getattr(self, name).tolist() for name in ("tp", "fp", "fn", "tn")},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict`."""
        counts = cls(data["thresholds"])
        for name in ("tp", "fp", "fn", "tn"):
            setattr(counts, name, np.asarray(data[name], np.int64))
        counts.n_tiles = int(data["n_tiles"])
        return counts
