"""Dense prediction of other tiles by fold averaging, and feature checks on the way in."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kelp.data.tile import load_tile
from kelp.errors import StaleInputError
from kelp.features.build import build_features
from kelp.features.stack import build_channels
from kelp.layout import RunLayout
from kelp.maps import MapStore, logit, sigmoid
from kelp.tabular.data import check_feature_names, load_table
from kelp.tabular.predict import (
    feature_config_of,
    fold_logits,
    load_fold_models,
    pixel_rows,
    predict_pixels,
    predict_tiles,
)
from tests.tabular.conftest import SMALL_FEATURES, Run


def test_test_tiles_average_the_fold_models(trained: Run, tmp_path: Path) -> None:
    store = MapStore(tmp_path / "test" / "xgboost")
    records = trained.catalog.test
    maps = dict(predict_tiles(records, trained.run, "xgboost", store=store, chunk_pixels=1000))
    assert sorted(maps) == sorted(r.tile_id for r in records)
    models = load_fold_models(trained.run, "xgboost")
    assert sorted(models) == [0, 1, 2]
    tile = load_tile(records[0])
    rows = pixel_rows(build_channels(tile, feature_config_of(models[0]))[0])
    # the fold ensemble averages logits, not probabilities
    expected = np.mean([logit(predict_pixels(m, rows)) for m in models.values()], axis=0)
    np.testing.assert_allclose(store.read(tile.tile_id), expected.reshape(tile.shape), atol=1e-5)
    np.testing.assert_allclose(maps[tile.tile_id], sigmoid(expected).reshape(tile.shape), atol=1e-6)
    assert store.manifest()["kind"] == "logit"
    assert store.tile_ids() == sorted(maps)
    assert store.manifest()["averaged_folds"] == [0, 1, 2]
    one = dict(predict_tiles(records[:1], trained.run, "xgboost", folds=[2]))
    np.testing.assert_allclose(
        one[tile.tile_id], predict_pixels(models[2], rows).reshape(tile.shape), atol=1e-6
    )


@pytest.mark.parametrize("name", ["lightgbm", "random_forest"])
def test_reloaded_fold_model_reproduces_its_oof_map_exactly(trained: Run, name: str) -> None:
    store = MapStore(trained.run / "oof" / name)
    tile_id = trained.folds.tiles_in(1)[0]
    model = load_fold_models(trained.run, name, [1])[1]
    tile = load_tile(next(r for r in trained.catalog.train if r.tile_id == tile_id))
    rows = pixel_rows(build_channels(tile, feature_config_of(model))[0])
    again = fold_logits([model], rows).reshape(tile.shape)
    np.testing.assert_array_equal(again, store.read(tile_id))  # float32 on disk: no rounding
    assert store.read(tile_id).dtype == np.float32


def test_fold_models_must_belong_to_the_current_maps(trained: Run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    leftover = run / "tabular" / "xgboost" / "fold=3"
    shutil.copytree(run / "tabular" / "xgboost" / "fold=0", leftover)
    with pytest.raises(StaleInputError, match=r"fold\(s\) \[3\] are left over .* rerun `kelp"):
        load_fold_models(run, "xgboost")
    shutil.rmtree(leftover)
    model_json = run / "tabular" / "xgboost" / "fold=1" / "model.json"
    record = json.loads(model_json.read_text())
    record["inputs"]["key"] = "retrained-since"
    model_json.write_text(json.dumps(record))
    with pytest.raises(StaleInputError, match=r"fold=1 was trained with other settings .* maps"):
        load_fold_models(run, "xgboost")


def test_table_from_another_feature_config_is_refused(trained: Run, tmp_path: Path) -> None:
    model = load_fold_models(trained.run, "catboost", [0])[0]
    table = load_table(trained.run / "features", expected=model.feature_names_in_)
    assert table.features.shape[1] == model.n_features_in_
    assert table.features.flags.c_contiguous
    other = SMALL_FEATURES.model_copy(update={"indices": ("NDWI", "NDVI")})
    build_features(other, RunLayout.of(trained.run, trained.data, features=tmp_path / "f"))
    with pytest.raises(StaleInputError, match="same names in another order: 'NDWI'"):
        load_table(tmp_path / "f", expected=model.feature_names_in_)
    fewer = SMALL_FEATURES.model_copy(update={"indices": ("NDVI",)})
    build_features(fewer, RunLayout.of(trained.run, trained.data, features=tmp_path / "g"))
    with pytest.raises(StaleInputError, match=r"missing \['NDWI'\]"):
        load_table(tmp_path / "g", expected=model.feature_names_in_)


def test_stack_from_another_feature_config_is_refused(trained: Run) -> None:
    model = load_fold_models(trained.run, "lightgbm", [0])[0]
    model.inputs = {**model.inputs, "feature_config": {"indices": ["NDWI", "NDVI"]}}
    with pytest.raises(StaleInputError, match="feature config: features differ"):
        feature_config_of(model)
    config = SMALL_FEATURES.model_copy(update={"water_only": False})  # same names, new values
    model.inputs["feature_config"] = config.model_dump(mode="json")
    with pytest.raises(StaleInputError, match="trained on stack"):
        feature_config_of(model)
    model.inputs = {}
    with pytest.raises(ValueError, match="records no feature config"):
        feature_config_of(model)


def test_missing_models_say_how_to_train_them(trained: Run, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train-trees --models xgboost"):
        next(predict_tiles(trained.catalog.test, tmp_path, "xgboost"))
    with pytest.raises(FileNotFoundError, match=r"fold\(s\) \[5\]"):
        load_fold_models(trained.run, "xgboost", [0, 5])


def test_check_feature_names_messages() -> None:
    check_feature_names(["a", "b"], ["a", "b"], "x")
    with pytest.raises(StaleInputError, match=r"^x: .*unexpected \['c'\].*kelp build-features"):
        check_feature_names(["a", "b"], ["a", "b", "c"], "x")
