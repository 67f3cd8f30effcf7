"""The CNN's channels come from kelp.features, narrowed but identical."""

from pathlib import Path

import numpy as np
import pytest

from kelp.cnn.channels import ChannelSource, check_channels, subset_config
from kelp.data import load_tile, open_catalog
from kelp.errors import ConfigError
from kelp.features import FeatureConfig, build_channels, channel_names
from tests.cnn.conftest import FEATURES


@pytest.mark.parametrize(
    "channels",
    [
        ("nir", "NDVI", "dem_water"),
        ("NDWI", "nir_offset", "land_closeness", "qa", "DEMWM"),
        ("nir_gaussian_s1", "red"),  # a filtered channel brings its base channel along
        tuple(channel_names(FEATURES)),
    ],
)
def test_subset_values_equal_the_full_stack(run_dir: tuple[Path, Path], channels: tuple) -> None:
    data, _ = run_dir
    tile = load_tile(open_catalog(data).train[1])  # has a DEM gap: NaN in some channels
    full, names = build_channels(tile, FEATURES)
    subset = subset_config(FEATURES, channels)
    assert len(channel_names(subset)) <= len(names)
    source = ChannelSource(FEATURES, channels, ("swir", "nir", "red", "green", "blue", "qa", "dem"))
    raw, mask = source(open_catalog(data).train[1])
    assert raw.shape == (len(channels), *tile.shape)
    assert raw.dtype == np.float32
    expected = full[[names.index(c) for c in channels]]
    np.testing.assert_array_equal(raw, expected)  # NaN where NaN, identical elsewhere
    assert mask is not None


def test_unknown_channel_lists_valid_names() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown channel 'NDVII'; did you mean 'NDVI'.* valid: swir"
    ):
        check_channels(["nir", "NDVII"], channel_names(FEATURES))
    with pytest.raises(ConfigError, match="kelp build-features"):
        subset_config(FeatureConfig(indices=("NDVI",)), ["MNDWI"])


def test_cache_keeps_tiles_within_budget(run_dir: tuple[Path, Path]) -> None:
    data, _ = run_dir
    records = open_catalog(data).train
    order = ("swir", "nir", "red", "green", "blue", "qa", "dem")
    cached = ChannelSource(FEATURES, ("nir",), order, cache_mb=1)
    first = cached(records[0])
    assert cached(records[0])[0] is first[0]
    uncached = ChannelSource(FEATURES, ("nir",), order, cache_mb=0)
    assert uncached(records[0])[0] is not uncached(records[0])[0]
