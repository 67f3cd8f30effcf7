import numpy as np
import pytest
from affine import Affine

from kelp.bands import MISSING
from kelp.config import validate_config
from kelp.data.tile import Tile
from kelp.errors import ConfigError
from kelp.features.config import FeatureConfig, FilterConfig
from kelp.features.indices import compute_index
from kelp.features.stack import build_channels, channel_names
from tests.conftest import make_dem, make_image


def _tile(size: int = 40, seed: int = 0) -> Tile:
    rng = np.random.default_rng(seed)
    dem = make_dem(rng, size)
    kelp = np.zeros((size, size), np.uint8)
    image = make_image(rng, dem, kelp)
    return Tile("T0000001", image, kelp, Affine.identity())


def test_default_stack_shape_names_and_dtype() -> None:
    tile = _tile()
    stack, names = build_channels(tile, FeatureConfig())
    assert names == channel_names(FeatureConfig())
    assert stack.shape == (len(names), 40, 40)
    assert stack.dtype == np.float32
    assert len(set(names)) == len(names)
    assert names[:5] == ["swir", "nir", "red", "green", "blue"]
    assert "NDVI" in names
    assert "land_closeness" in names
    assert "nir_offset" in names
    assert "NDVI_dog_s4" in names
    assert not np.isinf(stack).any()


def test_stack_values_match_their_definitions() -> None:
    tile = _tile()
    tile.image[1, 5, 5] = MISSING  # missing NIR
    cfg = FeatureConfig(
        indices=("NDVI",),
        context=("dem_water",),
        offsets=("nir",),
        filters=FilterConfig(channels=()),
    )
    stack, names = build_channels(tile, cfg)
    assert names == ["swir", "nir", "red", "green", "blue", "NDVI", "dem_water", "nir_offset"]
    water = tile.band("dem") <= 0
    np.testing.assert_array_equal(stack[6], water.astype(np.float32))
    ndvi = stack[5]
    assert np.isnan(ndvi[~water]).all()  # indices only on clear water
    assert np.isnan(ndvi[5, 5])  # a missing input stays missing
    bands = {b: tile.band(b).astype(np.float32) for b in ("nir", "red")}
    expected = compute_index("NDVI", bands)
    keep = water & ~np.isnan(ndvi)
    np.testing.assert_allclose(ndvi[keep], expected[keep], rtol=1e-6)
    nir = stack[1]
    clear = water & ~np.isnan(nir)
    np.testing.assert_allclose(stack[7][clear], (nir - np.median(nir[clear]))[clear])


def test_water_only_off_keeps_land_values() -> None:
    cfg = FeatureConfig(indices=("NDVI",), water_only=False, filters=FilterConfig(channels=()))
    stack, names = build_channels(_tile(), cfg)
    assert not np.isnan(stack[names.index("NDVI")]).any()


def test_subset_config() -> None:
    cfg = FeatureConfig(
        bands=("nir",), indices=(), context=(), offsets=(),
        filters=FilterConfig(channels=("nir",), sigmas=(1.0,), kinds=("gaussian",)),
    )  # fmt: skip
    stack, names = build_channels(_tile(), cfg)
    assert names == ["nir", "nir_gaussian_s1"]
    assert stack.shape == (2, 40, 40)


def test_band_all_missing() -> None:
    tile = _tile()
    tile.image[0] = MISSING  # SWIR entirely missing
    stack, names = build_channels(tile, FeatureConfig())
    assert np.isnan(stack[names.index("swir")]).all()
    assert np.isnan(stack[names.index("MNDWI")]).all()  # uses SWIR
    assert np.isnan(stack[names.index("swir_gaussian_s1")]).all()
    assert not np.isnan(stack[names.index("nir")]).any()
    assert not np.isinf(stack).any()


def test_no_water_and_no_land_tiles() -> None:
    land = _tile()
    land.image[6] = 20  # all land
    stack, names = build_channels(land, FeatureConfig())
    assert np.isnan(stack[names.index("NDVI")]).all()
    assert np.isnan(stack[names.index("nir_offset")]).all()
    sea = _tile()
    sea.image[6] = 0  # all sea
    stack, names = build_channels(sea, FeatureConfig())
    assert not stack[names.index("land_closeness")].any()


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ({"indices": ["NDVI", "NDVX"]}, ValueError, "NDVX"),
        ({"filters": {"channels": ["nope"]}}, ValueError, "filter channel 'nope'"),
        ({"indices": ["NDVI", "ndvi"]}, ValueError, "listed twice"),
    ],
)
def test_bad_configs_fail_when_channels_are_named(
    values: dict[str, object], error: type[Exception], match: str
) -> None:
    cfg = validate_config(FeatureConfig, values)
    with pytest.raises(error, match=match):
        channel_names(cfg)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"bandz": ["nir"]}, "unknown key 'bandz'; valid keys: bands, indices"),
        ({"filters": {"sigma": [1]}}, "unknown key 'filters.sigma'; valid keys: channels, sigmas"),
        ({"filters": {"sigmas": [0]}}, "sigmas must be > 0"),
        ({"bands": ["nir", "qa"]}, "bands.1"),
        ({"sampling": {"buffer": -1}}, "sampling.buffer"),
    ],
)
def test_config_validation_names_the_key(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_config(FeatureConfig, values)


def test_filter_scale_larger_than_tile() -> None:
    cfg = FeatureConfig(filters=FilterConfig(sigmas=(1.0, 100.0)))
    with pytest.raises(ValueError, match="larger than the 40x40 tile"):
        build_channels(_tile(), cfg)


def test_hashes() -> None:
    a, b = FeatureConfig(), FeatureConfig(indices=("NDVI",))
    assert a.stack_hash() == FeatureConfig().stack_hash()
    assert a.stack_hash() != b.stack_hash()
    dense = FeatureConfig(sampling={"dense": True})  # type: ignore[arg-type]
    assert dense.stack_hash() == a.stack_hash()
    assert dense.table_hash() != a.table_hash()


_AT_PIXELS_CONFIGS = [
    FeatureConfig(),  # filters on nir, swir and NDVI: their sources stay whole-tile
    FeatureConfig(
        indices=("NDVI", "MNDWI", "GVMI"),
        context=("qa", "DEMWM"),
        offsets=(),
        filters=FilterConfig(channels=()),
    ),  # the lean table: nothing on the whole tile
    FeatureConfig(
        water_only=False,
        filters=FilterConfig(channels=("land_closeness", "nir_offset", "qa"), sigmas=(2.0,)),
    ),  # filters on context and offset channels
]


@pytest.mark.parametrize("config", _AT_PIXELS_CONFIGS)
@pytest.mark.parametrize("case", ["plain", "missing", "all_land", "all_sea", "no_clear_water"])
def test_channels_at_pixels_are_the_whole_stack_there(config: FeatureConfig, case: str) -> None:
    tile = _tile(size=37, seed=3)
    if case == "missing":
        tile.image[1, 3:9, 4] = MISSING  # a stripe of missing NIR
        tile.image[6, 20:25, 20:25] = MISSING  # a DEM void
    elif case == "all_land":
        tile.image[6] = 20
    elif case == "all_sea":
        tile.image[6] = 0
    elif case == "no_clear_water":
        tile.image[5] = 1  # every pixel flagged
    whole, names = build_channels(tile, config)
    pixels = np.random.default_rng(0).choice(37 * 37, 300, replace=False)
    pixels = np.concatenate([pixels, [0, 37 * 37 - 1, pixels[0]]])  # corners and a repeat
    at, at_names = build_channels(tile, config, pixels)
    assert at_names == names
    assert at.shape == (len(names), len(pixels))
    assert at.dtype == np.float32
    expected = whole.reshape(len(names), -1)[:, pixels]
    np.testing.assert_array_equal(at, expected)  # NaN where NaN, every other value equal
    assert at.tobytes() == expected.tobytes()  # bit for bit, signed zeros and NaN payloads too
