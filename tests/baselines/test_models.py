"""The baselines as estimators: registry, row counts, probability maps."""

import numpy as np
import pytest

from kelp.baselines import BASELINES, FirstPlace, NdviRule, SecondPlace, TileSet, create_baseline
from kelp.baselines.features import second_place_pixels
from kelp.data.catalog import scan_catalog
from kelp.errors import ConfigError, InputError
from kelp.features.sampling import tile_rng
from tests.baselines.conftest import Synth, make_tile, water_image


@pytest.fixture(scope="module")
def tiles(synth: Synth) -> tuple[TileSet, TileSet]:
    catalog, _ = scan_catalog(synth.data)
    fit = [r for r in catalog.train if synth.folds.fold_of(r.tile_id) == 0]
    stop = [r for r in catalog.train if synth.folds.fold_of(r.tile_id) == 1]
    return TileSet(fit), TileSet(stop)


def test_registry_creates_each_baseline_and_names_the_valid_ones() -> None:
    assert BASELINES.names() == ("ndvi", "first_place", "second_place")
    assert isinstance(create_baseline("ndvi"), NdviRule)
    model = create_baseline("first_place", seed=3, max_rows=10, n_jobs=1)
    assert isinstance(model, FirstPlace)
    assert (model.seed, model.max_rows, model.n_jobs) == (3, 10, 1)
    with pytest.raises(ConfigError, match="did you mean 'first_place'.*valid: ndvi"):
        create_baseline("first_plcae")


def test_first_place_samples_uniformly_up_to_max_rows(tiles: tuple[TileSet, TileSet]) -> None:
    fit, stop = tiles
    model = FirstPlace(max_rows=8000, n_jobs=1, max_rounds=10).fit(fit, stop)
    info = model.fit_info_
    assert 8000 - len(fit) <= info["fit_rows"] <= 8000
    assert 2000 - len(stop) <= info["stop_rows"] <= 2000
    assert info["early_stopping"] == "on"
    assert 1 <= model.best_iteration_ <= 10
    prob = model.predict_proba(fit[0])
    assert prob.shape == (64, 64)
    assert prob.dtype == np.float32
    assert ((prob >= 0) & (prob <= 1)).all()


def test_second_place_rows_are_kelp_ring_and_2_percent(tiles: tuple[TileSet, TileSet]) -> None:
    fit, _ = tiles
    model = SecondPlace(seed=4, n_jobs=1, n_estimators=5).fit(fit)
    expected = sum(len(second_place_pixels(t.mask, tile_rng(4, t.tile_id))) for t in fit)
    assert model.fit_info_["fit_rows"] == expected
    assert model.fit_info_["early_stopping"] == "off: no held-out areas"
    assert model.best_iteration_ == 5
    assert model.predict_proba(fit[0]).shape == (64, 64)


def test_a_fit_without_kelp_or_masks_is_refused() -> None:
    empty = make_tile(water_image(), np.zeros((6, 6), np.uint8))
    with pytest.raises(InputError, match="no kelp pixel"):
        SecondPlace(n_jobs=1).fit([empty])
    with pytest.raises(InputError, match="has no kelp mask"):
        FirstPlace(n_jobs=1).fit([make_tile(water_image())])


def test_ndvi_rule_fits_nothing() -> None:
    rule = NdviRule()
    assert rule.fit([]) is rule
    assert rule.best_iteration_ is None
    assert rule.predict_proba(make_tile(water_image())).shape == (6, 6)
