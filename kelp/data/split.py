"""Per fold: what a model fits on, what chooses its stopping point, and what it predicts.

Trees and CNN share this one plan. Fold k's models never see fold k: they fit on the other
folds' tiles and choose their early-stopping round or best epoch on an inner, area-grouped
part of those same tiles (about ``stop_fraction`` of their areas), picked with
scikit-learn's ``StratifiedGroupKFold`` (groups = ``aoi_id`` from ``folds.csv``, strata =
whether a tile has kelp) so that kelp lies on both sides. Fold k's tiles are only ever
predicted, so its out-of-fold maps are scored by a model chosen without them.

Folds without kelp, decided as follows:

- the training folds hold no kelp: :class:`InputError` (nothing to learn);
- no area split puts kelp on both sides (fewer than two kelp areas): early stopping is off;
  the boosted models train ``max_rounds`` rounds and the CNN keeps its last epoch, on every
  training tile, noted in the fold's record (choosing on kelp-free tiles would pick the
  "never kelp" model);
- the held-out fold k has no kelp: fine; its maps are still predicted and its Dice is 1.0
  only if it predicts no kelp either.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from kelp.data.folds import FoldAssignment
from kelp.errors import InputError

__all__ = ["FoldPlan", "plan_fold"]


@dataclass(frozen=True)
class FoldPlan:
    """The tiles of one fold's training run.

    Attributes:
        fold: k.
        held_out: fold k's tiles (predicted, never trained on), sorted.
        fit_tiles: tiles whose rows the boosted models fit, sorted.
        stop_tiles: tiles whose rows decide early stopping, sorted (empty when off).
        stop_areas: their areas, sorted.
        note: why early stopping is off, or ``""``.
    """

    fold: int
    held_out: tuple[str, ...]
    fit_tiles: tuple[str, ...]
    stop_tiles: tuple[str, ...]
    stop_areas: tuple[str, ...]
    note: str = ""

    @property
    def train_tiles(self) -> tuple[str, ...]:
        """Every tile a model of this fold may learn from (fit + stop), sorted."""
        return tuple(sorted(self.fit_tiles + self.stop_tiles))


def plan_fold(
    assignment: FoldAssignment,
    fold: int,
    has_kelp: Mapping[str, bool],
    stop_fraction: float = 0.2,
    seed: int = 0,
) -> FoldPlan:
    """Split the tiles of the folds other than ``fold`` into fit and early-stopping tiles.

    Args:
        assignment: the folds file.
        fold: the held-out fold k.
        has_kelp: per tile of the feature table, whether it has kelp rows; train tiles
            absent from it (skipped by ``build-features``) are left out.
        stop_fraction: share of the training areas to early-stop on.
        seed: seeds the choice of areas.

    Returns:
        The plan.

    Raises:
        InputError: the training tiles hold no kelp.
    """
    held = sorted(t for t in assignment.tiles_in(fold))
    train = [
        (t, a)
        for t, a, f in zip(assignment.tile_ids, assignment.aoi_ids, assignment.folds, strict=True)
        if f != fold and t in has_kelp
    ]
    if not any(has_kelp[t] for t, _ in train):
        raise InputError(
            f"fold {fold}: the {len(train)} training tiles (all folds but {fold}) hold no kelp "
            "pixel, so no model can learn kelp; make folds that spread the kelp tiles "
            "(`kelp data folds` stratifies by has_kelp) or use fewer folds"
        )
    tiles = np.array([t for t, _ in train])
    areas = np.array([a for _, a in train])
    strata = np.array([has_kelp[t] for t, _ in train], dtype=int)
    n_splits = min(max(2, round(1 / stop_fraction)), len(set(areas)))
    if n_splits >= 2:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            for fit_idx, stop_idx in splitter.split(tiles, strata, areas):
                if strata[fit_idx].any() and strata[stop_idx].any():
                    return FoldPlan(
                        fold,
                        tuple(held),
                        tuple(sorted(tiles[fit_idx])),
                        tuple(sorted(tiles[stop_idx])),
                        tuple(sorted(set(areas[stop_idx]))),
                    )
    kelp_areas = len(set(areas[strata == 1]))
    return FoldPlan(
        fold,
        tuple(held),
        tuple(sorted(tiles)),
        (),
        (),
        note=(
            f"early stopping off: only {kelp_areas} of the {len(set(areas))} training "
            "area(s) hold kelp, so no area split leaves kelp on both sides"
        ),
    )
