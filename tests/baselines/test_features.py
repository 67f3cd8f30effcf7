"""The recipes' features and rows against values computed by hand on hand-made tiles."""

import numpy as np
import pytest

from kelp.bands import MISSING
from kelp.baselines.features import (
    FIRST_PLACE_FEATURES,
    SECOND_PLACE_FEATURES,
    first_place_features,
    ndvi_probability,
    second_place_features,
    second_place_pixels,
    uniform_pixels,
)
from kelp.baselines.tiles import TileSet, row_budget, tile_pixels
from tests.baselines.conftest import Synth, make_tile, water_image

SWIR, NIR, RED, GREEN, BLUE, QA, DEM = range(7)


def coast_image() -> np.ndarray:
    """6 x 6: land (DEM 10) in column 0, NIR = 200 + 10 * column, NIR missing at (0, 5)."""
    image = water_image()
    image[NIR] = 200 + 10 * np.arange(6)[None, :]
    image[DEM, :, 0] = 10
    image[NIR, 0, 5] = MISSING
    return image


def first(tile_image: np.ndarray, name: str) -> np.ndarray:
    return first_place_features(make_tile(tile_image))[FIRST_PLACE_FEATURES.index(name)]


def second(tile_image: np.ndarray, name: str) -> np.ndarray:
    return second_place_features(make_tile(tile_image))[SECOND_PLACE_FEATURES.index(name)]


def test_first_place_has_11_float32_channels() -> None:
    stack = first_place_features(make_tile(coast_image()))
    assert stack.shape == (11, 6, 6)
    assert stack.dtype == np.float32
    assert np.isfinite(stack).all()


def test_first_place_nir_offset_is_from_the_median_over_valid_water() -> None:
    # Water = columns 1..5 minus the missing pixel: NIR 210, 220, 230 (x6 each) lead the 29
    # sorted values, so the median (the 15th) is 230; land (column 0) is left out.
    offset = first(coast_image(), "nir_minus_water_median")
    expected = (200 + 10 * np.arange(6) - 230.0)[None, :].repeat(6, 0)
    expected[0, 5] = 0  # missing -> 0
    np.testing.assert_allclose(offset, expected)
    assert first(coast_image(), "nir")[0, 5] == 0


def test_first_place_ndvi_offset_is_from_the_median_ndvi_over_water() -> None:
    ndvi = lambda nir: (nir - 50) / (nir + 50)  # noqa: E731
    offset = first(coast_image(), "ndvi_minus_water_median")
    assert offset[2, 1] == pytest.approx(ndvi(210) - ndvi(230), abs=1e-6)
    assert offset[3, 4] == pytest.approx(ndvi(240) - ndvi(230), abs=1e-6)
    assert first(coast_image(), "NDVI")[3, 4] == pytest.approx(ndvi(240), abs=1e-6)


def test_first_place_land_closeness_falls_with_distance_to_land() -> None:
    closeness = first(coast_image(), "land_closeness")
    np.testing.assert_allclose(closeness, (1 / (1 + 0.1 * np.arange(6)))[None, :].repeat(6, 0))


def test_first_place_without_land_or_water() -> None:
    sea = water_image()
    sea[DEM, :, 0] = MISSING  # a missing DEM is neither land nor water
    assert (first(sea, "land_closeness") == 0).all()
    land = water_image()
    land[DEM] = 5
    assert (first(land, "nir_minus_water_median") == 0).all()


def test_second_place_masks_indices_off_clear_water() -> None:
    image = coast_image()
    image[QA, 2, 2] = 1  # cloud
    image[DEM, 3, 3] = -5  # sea below 0 m: water, DEMWM 0
    image[DEM, 4, 4] = MISSING  # missing DEM: water (the land mask never removes kelp)
    stack = second_place_features(make_tile(image))
    assert stack.shape == (22, 6, 6)
    assert stack.dtype == np.float32
    indices = stack[7:21]
    assert np.isnan(indices[:, :, 0]).all()  # land
    assert np.isnan(indices[:, 2, 2]).all()  # cloud
    assert np.isnan(indices[:, 0, 5]).all()  # a missing band
    assert np.isfinite(indices[:, 3, 3]).all()
    assert np.isfinite(indices[:, 4, 4]).all()
    assert np.isnan(indices).sum() == 14 * (6 + 2)
    assert second(image, "NDVI")[1, 2] == pytest.approx((220 - 50) / (220 + 50))
    assert second(image, "qa")[2, 2] == 1  # raw bands stay everywhere
    assert np.isnan(second(image, "nir")[0, 5])
    demwm = second(image, "DEMWM")
    assert demwm[0, 0] == 10
    assert demwm[3, 3] == 0
    assert np.isnan(demwm[4, 4])


def test_ndvi_probability_is_zero_off_clear_water() -> None:
    image = coast_image()
    image[QA, 2, 2] = 1
    prob = ndvi_probability(make_tile(image))
    assert prob.dtype == np.float32
    assert prob[2, 2] == 0
    assert prob[0, 5] == 0
    assert (prob[:, 0] == 0).all()
    assert prob[1, 3] == pytest.approx(((230 - 50) / (230 + 50) + 1) / 2)


@pytest.mark.parametrize(
    ("where", "n_rows"),
    [((7, 7), 121), ((0, 0), 36), ((7, 0), 66)],
)
def test_second_place_rows_are_the_kelp_and_its_5px_ring(
    where: tuple[int, int], n_rows: int
) -> None:
    mask = np.zeros((15, 15), np.uint8)
    mask[where] = 1
    rows = second_place_pixels(mask, np.random.default_rng(0), other_fraction=0.0)
    assert len(rows) == n_rows
    r, c = np.unravel_index(rows, mask.shape)
    assert (np.abs(r - where[0]) <= 5).all()
    assert (np.abs(c - where[1]) <= 5).all()
    assert np.ravel_multi_index(where, mask.shape) in rows


def test_second_place_rows_keep_2_percent_of_the_rest() -> None:
    mask = np.zeros((200, 200), np.uint8)
    mask[100, 100] = 1
    rows = second_place_pixels(mask, np.random.default_rng(0))
    again = second_place_pixels(mask, np.random.default_rng(0))
    np.testing.assert_array_equal(rows, again)
    others = len(rows) - 121
    assert others == pytest.approx(0.02 * (mask.size - 121), rel=0.1)
    assert (np.diff(rows) > 0).all()


def test_uniform_pixels_and_row_budget() -> None:
    np.testing.assert_array_equal(uniform_pixels(5, 9, np.random.default_rng(0)), np.arange(5))
    picked = uniform_pixels(1000, 100, np.random.default_rng(0))
    assert len(np.unique(picked)) == 100
    assert (np.diff(picked) > 0).all()
    assert row_budget([100, 300], 1000) == [100, 300]
    assert row_budget([100, 300], 200) == [50, 150]


def test_tile_set_reads_pixel_counts_from_headers(synth: Synth) -> None:
    from kelp.data.catalog import scan_catalog

    catalog, _ = scan_catalog(synth.data)
    tiles = TileSet(catalog.train[:3])
    assert tile_pixels(tiles) == [64 * 64] * 3
    assert tiles[1].tile_id == catalog.train[1].tile_id
    assert tiles[1:].tile_ids == tuple(r.tile_id for r in catalog.train[1:3])
    assert tile_pixels([make_tile(water_image(4, 5))]) == [20]
