import numpy as np
import pytest
from affine import Affine
from scipy import ndimage

from kelp.bands import MISSING
from kelp.data.tile import Tile
from kelp.features import filters
from kelp.features.channels import (
    clear_water,
    land_closeness,
    land_mask,
    spectral_bands,
    water_medians,
)
from kelp.features.filters import filter_bank, filter_names, nan_gaussian


def _tile(h: int = 6, w: int = 8) -> Tile:
    image = np.full((7, h, w), 8000, np.int32)
    image[5] = 0
    image[6] = 0
    image[6, :, :2] = 50  # land in the two left columns
    return Tile("T", image, np.zeros((h, w), np.uint8), Affine.identity())


def test_missing_becomes_nan_before_arithmetic() -> None:
    tile = _tile()
    tile.image[1, 0, 3] = MISSING
    bands = spectral_bands(tile)
    assert np.isnan(bands["nir"][0, 3])
    assert np.isnan(bands["nir"]).sum() == 1
    assert bands["nir"].dtype == np.float32


def test_clear_water_excludes_land_cloud_and_missing() -> None:
    tile = _tile()
    tile.image[5, 1, 4] = 1  # cloud
    tile.image[0, 2, 5] = MISSING  # stripe pixel
    tile.image[6, 3, 6] = MISSING  # DEM void counts as water, not land
    clear = clear_water(tile)
    assert not clear[:, :2].any()
    assert not clear[1, 4]
    assert not clear[2, 5]
    assert clear[3, 6]
    assert clear.sum() == 6 * 6 - 2
    assert not land_mask(tile)[3, 6]


def test_land_closeness() -> None:
    land = np.zeros((1, 5), bool)
    land[0, 0] = True
    np.testing.assert_allclose(land_closeness(land)[0], 1 / (1 + 0.1 * np.arange(5)), rtol=1e-6)
    assert not land_closeness(np.zeros((3, 3), bool)).any()


def test_water_medians_are_over_clear_water_only() -> None:
    band = np.array([[1.0, 2.0, 3.0, 100.0]], np.float32)
    clear = np.array([[True, True, True, False]])
    offsets = band - water_medians({"nir": band}, clear)["nir"]
    np.testing.assert_allclose(offsets, [[-1, 0, 1, 98]])
    assert np.isnan(water_medians({"nir": band}, np.zeros_like(clear))["nir"])


def test_nan_gaussian_ignores_nan() -> None:
    x = np.full((21, 21), 5.0, np.float32)
    x[10, :] = np.nan  # a stripe
    out = nan_gaussian(x, 2.0)
    np.testing.assert_allclose(out, 5.0, rtol=1e-5)  # the stripe is filled, nothing darkened
    assert np.isnan(nan_gaussian(np.full((5, 5), np.nan, np.float32), 1.0)).all()


def test_filter_bank_shapes_names_and_values() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 32)).astype(np.float32)
    out = filter_bank(x, [1.0, 2.0], ["gaussian", "gradient", "log", "dog"])
    assert out.shape == (8, 32, 32)
    assert out.dtype == np.float32
    assert filter_names("nir", [1.0, 2.0], ["gaussian", "dog"]) == [
        "nir_gaussian_s1", "nir_dog_s1", "nir_gaussian_s2", "nir_dog_s2",
    ]  # fmt: skip
    # a constant image has no gradient, Laplacian or DoG response
    flat = filter_bank(np.full((16, 16), 3.0, np.float32), [2.0], ["gradient", "log", "dog"])
    np.testing.assert_allclose(flat, 0, atol=1e-5)
    # a ramp has gradient magnitude equal to its slope away from the edges
    ramp = np.tile(np.arange(32, dtype=np.float32) * 0.5, (32, 1))
    grad = filter_bank(ramp, [1.0], ["gradient"])[0]
    np.testing.assert_allclose(grad[8:-8, 8:-8], 0.5, rtol=1e-4)


def test_filter_scale_larger_than_tile() -> None:
    with pytest.raises(ValueError, match=r"sigma\(s\) \[40.0\] px larger than the 16x16 tile"):
        filter_bank(np.zeros((16, 16), np.float32), [1.0, 40.0], ["gaussian"])


def test_filter_bank_shared_weights_and_pixels_change_nothing() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((30, 33)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    y = (x * 2).astype(np.float32)  # the same valid mask
    sigmas, kinds = (1.0, 2.0), ("gaussian", "gradient", "log", "dog")
    alone = filter_bank(y, sigmas, kinds)
    shared: dict[float, np.ndarray] = {}
    filter_bank(x, sigmas, kinds, shared)
    assert sorted(shared) == sorted([1.0, 2.0, 0.66, 1.32])  # each smoothing weight once
    assert filter_bank(y, sigmas, kinds, shared).tobytes() == alone.tobytes()
    pixels = rng.choice(30 * 33, 50, replace=False)
    at = filter_bank(x, sigmas, kinds, pixels=pixels)
    assert at.shape == (8, 50)
    whole = filter_bank(x, sigmas, kinds).reshape(8, -1)[:, pixels]
    assert at.tobytes() == whole.tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_gradient_and_laplacian_at_pixels_are_the_whole_tile_functions_bit_for_bit(
    seed: int,
) -> None:
    """Every pixel, edges and corners included, of tiles with NaN, far-apart magnitudes and
    large offsets (where a different order of float operations would show)."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 40, 2)
    scale = 10.0 ** rng.uniform(-6, 6)
    x = rng.normal(size=(h, w)) * scale + rng.normal() * scale * 1000
    x = x.astype(np.float32)
    x[rng.random((h, w)) < 0.1] = np.nan
    pixels = rng.permutation(h * w)
    dy, dx = np.gradient(x)
    at_dy, at_dx = filters._gradient(x, pixels)
    assert at_dy.tobytes() == dy.reshape(-1)[pixels].tobytes()
    assert at_dx.tobytes() == dx.reshape(-1)[pixels].tobytes()
    laplacian = ndimage.laplace(x).reshape(-1)[pixels]
    assert filters._laplace(x, pixels).tobytes() == laplacian.tobytes()
