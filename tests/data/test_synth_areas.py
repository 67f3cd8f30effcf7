"""Tests for the synthetic areas' DEMs: the shared terrain and its stressed dates."""

from typing import Any

import numpy as np
import pytest

from kelp.bands import MISSING
from kelp.data.synth_areas import area_dem, stress_dems


def test_stress_dems_shift_flood_and_void_a_shared_dem() -> None:
    size, reach = 64, 13  # shifts up to 20% of the side
    canvas = area_dem(2, 3, size + reach)
    dems = stress_dems(canvas, size, 8, [2, 3], shift=0.2, tide=0.4, voids=0.3)
    assert dems.shape == (8, size, size) and dems.dtype == np.int16
    np.testing.assert_array_equal(dems, stress_dems(canvas, size, 8, [2, 3]))  # seeded
    assert not np.array_equal(dems, stress_dems(canvas, size, 8, [2, 4]))
    offsets = set()
    for dem in dems:
        voids = dem == MISSING
        assert voids.mean() <= 0.3 + 1e-9
        # Every date is a window of the canvas: land pixels keep their height, the tide only
        # turns low land into sea.
        fits = [
            (oy, ox)
            for oy in range(reach + 1)
            for ox in range(reach + 1)
            if np.array_equal(dem[dem > 0], canvas[oy : oy + size, ox : ox + size][dem > 0])
            and (canvas[oy : oy + size, ox : ox + size][(dem == 0)] < dem[dem > 0].min()).all()
        ]
        assert fits
        offsets.add(fits[0])
    assert len(offsets) > 4


def test_stress_tide_changes_the_land_fraction_of_a_place() -> None:
    canvas = area_dem(0, 1, 64)
    dems = stress_dems(canvas, 64, 12, 0, shift=0.0, tide=0.4, voids=0.0)
    land = (dems > 0).mean(axis=(1, 2))
    full = (canvas > 0).mean()
    assert full * 0.6 - 0.01 <= land.min() < land.max() <= full
    assert land.max() - land.min() > 0.1 * full


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shift": 0.6}, r"shift must be in \[0, 0.5\]"),
        ({"tide": 1.0}, r"tide must be in \[0, 1\)"),
        ({"voids": -0.1}, r"voids must be in \[0, 1\)"),
        ({"n_dates": 0}, "n_dates must be >= 1"),
        ({"size": 60}, "canvas must be 2-D and at least 72 px"),
    ],
)
def test_stress_dems_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"canvas": np.zeros((64, 64), np.int16), "size": 48, "n_dates": 2,
                            "seed": 0, **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        stress_dems(**args)
    with pytest.raises(ValueError, match="side must be at least 38"):
        area_dem(0, 0, 37)
