"""Normalisation from training-fold statistics; NaN never reaches the network."""

from pathlib import Path

import numpy as np
import pytest

from kelp.cnn.channels import ChannelSource
from kelp.cnn.normalise import Normaliser, check_finite
from kelp.data import open_catalog
from kelp.errors import InputError
from kelp.features.manifest import read_manifest
from tests.cnn.conftest import CHANNELS, FEATURES

STATS = {
    "a": {"mean": 5.0, "std": 2.0, "q01": 0.0, "q99": 10.0},
    "b": {"mean": None, "std": None, "q01": None, "q99": None},  # no valid training pixel
    "c": {"mean": 1.0, "std": 0.0, "q01": 1.0, "q99": 1.0},  # constant
}


def _raw() -> np.ndarray:
    raw = np.zeros((3, 2, 3), np.float32)
    raw[0] = [[-5, 0, 5], [10, 20, np.nan]]
    raw[1] = 7.0
    raw[2] = [[1, 2, np.nan], [0, 1, 1]]
    return raw


def test_quantile_clips_scales_and_fills() -> None:
    norm = Normaliser.from_stats("quantile", ["a", "b", "c"], STATS, nan_fill=0.0)
    x = norm(_raw())
    np.testing.assert_allclose(x[0], [[0, 0, 0.5], [1, 1, 0]])
    np.testing.assert_array_equal(x[1], 0.0)  # dead channel: nan_fill everywhere
    np.testing.assert_allclose(x[2], [[0, 1, 0], [0, 0, 0]])  # range 0 scales by 1, clipped
    assert norm.dead_channels == ["b"]
    assert x.dtype == np.float32


def test_zscore() -> None:
    norm = Normaliser.from_stats("zscore", ["a", "c"], STATS, nan_fill=-1.0)
    x = norm(_raw()[[0, 2]])
    np.testing.assert_allclose(x[0], [[-5, -2.5, 0], [2.5, 7.5, -1]])
    assert np.isfinite(x).all()


def test_json_roundtrip() -> None:
    norm = Normaliser.from_stats("quantile", ["a", "b", "c"], STATS)
    again = Normaliser.from_json(norm.to_json())
    np.testing.assert_array_equal(again(_raw()), norm(_raw()))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: check_finite(np.array([[[0.0, np.nan]], [[np.inf, 1.0]]]), ["x", "y"], "t1"),
            InputError,
            r"input of t1 holds 2 NaN/inf value\(s\) \(per channel: \{'x': 1, 'y': 1\}\)",
        ),
        (
            lambda: Normaliser.from_stats("quantile", ["a"], STATS, float("nan"))(_raw()[:1], "T"),
            InputError,
            r"input of T holds .* must never see them",
        ),
        (
            lambda: Normaliser.from_stats("quantile", ["a"], STATS)(_raw()),
            ValueError,
            r"expected \(1, H, W\) channels \['a'\], got shape \(3, 2, 3\)",
        ),
        (lambda: Normaliser.from_stats("zscore", ["zz"], STATS), KeyError, "'zz'"),
    ],
)
def test_bad_input(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]


def test_real_tiles_with_gaps_become_finite(run_dir: tuple[Path, Path]) -> None:
    data, run = run_dir
    stats = read_manifest(run / "features")["normalisation"]["without_fold"]["0"]["channels"]
    norm = Normaliser.from_stats("quantile", CHANNELS, stats)
    source = ChannelSource(FEATURES, CHANNELS, ("swir", "nir", "red", "green", "blue", "qa", "dem"))
    saw_nan = False
    for record in open_catalog(data).tiles:
        raw, _ = source(record)
        saw_nan |= bool(np.isnan(raw).any())
        x = norm(raw, record.tile_id)
        assert np.isfinite(x).all()
        assert x.min() >= 0 and x.max() <= 1
    assert saw_nan  # the fixture has DEM gaps and land, so NaN inputs were exercised
