"""The inner early-stopping split: area-grouped, never fold k, kelp on both sides."""

import numpy as np
import pytest

from kelp.data.folds import FoldAssignment
from kelp.data.split import plan_fold
from kelp.errors import InputError


def _assignment(n_areas: int = 12, per_area: int = 3, k: int = 3) -> FoldAssignment:
    tiles = [f"T{a:02d}{d}" for a in range(n_areas) for d in range(per_area)]
    areas = [f"aoi{a:02d}" for a in range(n_areas) for _ in range(per_area)]
    folds = np.array([a % k for a in range(n_areas) for _ in range(per_area)])
    return FoldAssignment(tuple(tiles), tuple(areas), folds)


def _kelp_in_first_tile_of(areas: set[int], assignment: FoldAssignment) -> dict[str, bool]:
    return {t: t.endswith("0") and int(t[1:3]) in areas for t in assignment.tile_ids}


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_plan_keeps_fold_k_out_and_areas_whole(fold: int) -> None:
    assignment = _assignment()
    has_kelp = _kelp_in_first_tile_of(set(range(12)), assignment)
    plan = plan_fold(assignment, fold, has_kelp, stop_fraction=0.25, seed=0)
    held = set(assignment.tiles_in(fold))
    assert set(plan.held_out) == held
    assert not set(plan.fit_tiles) & held
    assert not set(plan.stop_tiles) & held
    assert not set(plan.fit_tiles) & set(plan.stop_tiles)
    assert set(plan.train_tiles) == set(assignment.tile_ids) - held
    area_of = dict(zip(assignment.tile_ids, assignment.aoi_ids))
    fit_areas = {area_of[t] for t in plan.fit_tiles}
    assert set(plan.stop_areas) == {area_of[t] for t in plan.stop_tiles}
    assert not fit_areas & set(plan.stop_areas)
    assert len(plan.stop_areas) == 2  # a quarter of the 8 training areas
    assert any(has_kelp[t] for t in plan.stop_tiles)
    assert any(has_kelp[t] for t in plan.fit_tiles)
    assert plan.note == ""
    assert plan == plan_fold(assignment, fold, has_kelp, stop_fraction=0.25, seed=0)


def test_one_kelp_area_turns_early_stopping_off() -> None:
    assignment = _assignment()
    plan = plan_fold(assignment, 0, _kelp_in_first_tile_of({1}, assignment))
    assert plan.stop_tiles == ()
    assert "early stopping off: only 1 of the 8 training area(s) hold kelp" in plan.note
    assert set(plan.fit_tiles) == set(assignment.tile_ids) - set(assignment.tiles_in(0))


def test_training_folds_without_kelp_are_refused() -> None:
    assignment = _assignment()
    has_kelp = _kelp_in_first_tile_of({0, 3}, assignment)  # areas 0 and 3 are both fold 0
    with pytest.raises(InputError, match="fold 0: the 24 training tiles .* hold no kelp"):
        plan_fold(assignment, 0, has_kelp)
    plan_fold(assignment, 1, has_kelp)  # fold 1 trains on fold 0's kelp: fine


def test_tiles_missing_from_the_table_are_left_out() -> None:
    assignment = _assignment()
    has_kelp = _kelp_in_first_tile_of(set(range(12)), assignment)
    del has_kelp["T010"]
    plan = plan_fold(assignment, 0, has_kelp)
    assert "T010" not in plan.train_tiles
