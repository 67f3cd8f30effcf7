"""The baselines by name: the NDVI rule and the two published tree recipes.

Every baseline follows one contract (:class:`Baseline`): ``fit(tiles, stop_tiles)``
returns itself, ``predict_proba(tile)`` gives a ``(H, W) float32`` P(kelp) map, which
:class:`~kelp.thresholds.ThresholdCounts` then scores at every threshold of its grid. A
wrong name raises the one "unknown baseline" error listing the valid ones.
"""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from kelp.baselines.features import ndvi_probability
from kelp.baselines.trees import DEFAULT_MAX_ROWS, FirstPlace, SecondPlace
from kelp.data.tile import Tile
from kelp.registry import Registry

__all__ = ["BASELINES", "Baseline", "NdviRule", "create_baseline"]


class Baseline(Protocol):
    """What the runner needs of a baseline.

    Attributes:
        name: its registered name.
        needs_fit: whether :meth:`fit` learns anything (the runner skips reading the
            training tiles of one that does not).
        best_iteration_: boosting rounds kept after :meth:`fit`; ``None`` for a rule.
    """

    name: ClassVar[str]
    needs_fit: ClassVar[bool]
    best_iteration_: int | None

    def params(self) -> dict[str, Any]:
        """Every parameter, for the record (and the resume key)."""
        ...

    def fit(self, tiles: Sequence[Tile], stop_tiles: Sequence[Tile] = ()) -> Self:
        """Learn from ``tiles``, early-stopping on ``stop_tiles``; returns ``self``."""
        ...

    def predict_proba(self, tile: Tile) -> np.ndarray:
        """``(H, W) float32`` P(kelp) of every pixel of ``tile``."""
        ...


class NdviRule:
    """ "Kelp where NDVI > t on clear water", with ``t`` chosen by the threshold grid.

    Its map is ``(NDVI + 1) / 2`` on clear water (QA == 0, not land, all five spectral
    bands present) and 0 elsewhere, so threshold ``p`` of the grid is ``t = 2p - 1``.
    Nothing is fitted.
    """

    name: ClassVar[str] = "ndvi"
    needs_fit: ClassVar[bool] = False
    best_iteration_: int | None = None

    def params(self) -> dict[str, Any]:
        """None: the rule has no parameter besides the threshold."""
        return {}

    def fit(self, tiles: Sequence[Tile] = (), stop_tiles: Sequence[Tile] = ()) -> Self:
        """Nothing to learn; reads no tile. Returns ``self``."""
        return self

    def predict_proba(self, tile: Tile) -> np.ndarray:
        """``(H, W) float32`` ``(NDVI + 1) / 2`` on clear water, 0 elsewhere."""
        return ndvi_probability(tile)


_Factory = Callable[[int, int, int], Baseline]  # (seed, max_rows, n_jobs) -> baseline

#: Every baseline, in the default order.
BASELINES: Registry[_Factory] = Registry("baseline")
BASELINES.register("ndvi", lambda seed, max_rows, n_jobs: NdviRule())
BASELINES.register(
    "first_place",
    lambda seed, max_rows, n_jobs: FirstPlace(seed=seed, max_rows=max_rows, n_jobs=n_jobs),
)
BASELINES.register(
    "second_place", lambda seed, max_rows, n_jobs: SecondPlace(seed=seed, n_jobs=n_jobs)
)


def create_baseline(
    name: str, *, seed: int = 0, max_rows: int = DEFAULT_MAX_ROWS, n_jobs: int = 2
) -> Baseline:
    """A new, unfitted baseline.

    Args:
        name: ``ndvi``, ``first_place`` or ``second_place``.
        seed: seeds the trees and their pixel samples.
        max_rows: training rows of ``first_place`` (the others ignore it).
        n_jobs: threads of the trees.

    Returns:
        The baseline.

    Raises:
        ConfigError: an unknown name (lists the valid ones).
    """
    return BASELINES.get(name)(seed, max_rows, n_jobs)
