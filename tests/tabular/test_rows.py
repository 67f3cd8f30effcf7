"""Per-fold rows read from the tiles' own files, and the ``max_rows`` cap: the same rows as
the whole table when uncapped, an exact seeded subsample with corrected weights when capped,
and a training run that never loads the whole table."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kelp.config import validate_config
from kelp.errors import ConfigError, StaleInputError
from kelp.layout import RunLayout
from kelp.tabular import train as train_module
from kelp.tabular.config import TabularConfig
from kelp.tabular.data import load_table, positive_tiles, read_rows
from kelp.tabular.runs import model_key
from kelp.tabular.train import train_trees
from tests.tabular.conftest import FAST

Prepared = tuple[Path, Path]


def _manifest(run: Path) -> dict:
    return json.loads((run / "features" / "manifest.json").read_text())


def test_uncapped_rows_are_the_tables_rows_of_those_tiles(prepared: Prepared) -> None:
    _, run = prepared
    manifest = _manifest(run)
    table = load_table(run / "features", manifest)
    tiles = sorted(manifest["tiles"])[1::2]
    rows, sample = read_rows(run / "features", manifest, [*tiles, "not-a-tile"])
    mask = table.rows_of(tiles)
    assert sample.available == sample.kept == int(mask.sum()) and sample.probability == 1.0
    assert np.array_equal(rows.features, table.features[mask], equal_nan=True)
    assert np.array_equal(rows.label, table.label[mask])
    assert np.array_equal(rows.weight, table.weight[mask])
    assert rows.tiles == tuple(tiles) and rows.feature_names == table.feature_names
    assert positive_tiles(run / "features", manifest) == table.positive_tiles()


def test_capped_rows_are_an_exact_seeded_subsample_with_corrected_weights(
    prepared: Prepared,
) -> None:
    _, run = prepared
    manifest = _manifest(run)
    tiles = sorted(manifest["tiles"])
    full, _ = read_rows(run / "features", manifest, tiles)
    rows, sample = read_rows(run / "features", manifest, tiles, max_rows=500, seed=(0, 1, 0))
    again, _ = read_rows(run / "features", manifest, tiles, max_rows=500, seed=(0, 1, 0))
    other, _ = read_rows(run / "features", manifest, tiles, max_rows=500, seed=(0, 2, 0))
    assert sample.kept == len(rows.label) == 500 and sample.available == len(full.label)
    assert sample.probability == pytest.approx(500 / len(full.label))
    assert np.array_equal(rows.features, again.features, equal_nan=True)
    assert not np.array_equal(rows.features, other.features, equal_nan=True)
    # the documented draw: default_rng(seed).choice without replacement, in table order
    index = np.sort(np.random.default_rng([0, 1, 0]).choice(len(full.label), 500, replace=False))
    assert np.array_equal(rows.features, full.features[index], equal_nan=True)
    assert np.array_equal(rows.label, full.label[index])
    np.testing.assert_allclose(rows.weight, full.weight[index] / sample.probability, rtol=1e-6)
    assert np.array_equal(rows.tile_index, full.tile_index[index])


def test_a_missing_or_changed_tile_file_is_named(prepared: Prepared, tmp_path: Path) -> None:
    _, run = prepared
    features = tmp_path / "features"
    shutil.copytree(run / "features", features)
    manifest = _manifest(run)
    first, second = sorted(manifest["tiles"])[:2]
    (features / "table" / f"{first}.parquet").unlink()
    with pytest.raises(StaleInputError, match=rf"{first}.parquet: missing from the feature"):
        read_rows(features, manifest, [first])
    manifest["tiles"][second]["rows"] += 1
    with pytest.raises(StaleInputError, match=rf"{second}.parquet: .* rows, the manifest says"):
        read_rows(features, manifest, [second])


def test_train_trees_reads_fold_rows_only_and_records_the_cap(
    prepared: Prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = prepared
    shutil.copytree(run, tmp_path / "run")
    layout = RunLayout.of(tmp_path / "run", data)

    def no_whole_table(*args: object, **kwargs: object) -> None:
        raise AssertionError("train_trees loaded the whole table")

    monkeypatch.setattr(train_module, "load_table", no_whole_table, raising=False)
    capped = FAST.model_copy(update={"models": ("lightgbm", "random_forest"), "max_rows": 400})
    train_trees(capped, layout, folds=[0])
    boosted = json.loads((layout.tree_fold("lightgbm", 0) / "metrics.json").read_text())
    forest = json.loads((layout.tree_fold("random_forest", 0) / "metrics.json").read_text())
    assert boosted["fit_rows"] == 400 and boosted["rows"]["fit"]["kept"] == 400
    assert boosted["rows"]["fit"]["available"] > 400
    assert boosted["rows"]["stop"]["kept"] <= 400 and boosted["stop_rows"] > 0
    assert forest["fit_rows"] == 400 and "stop" not in forest["rows"]


def test_the_cap_is_in_the_model_key_only_when_set() -> None:
    inputs = {"stack_hash": "x"}
    plain = model_key("lightgbm", "cpu", FAST, inputs)
    assert model_key("lightgbm", "cpu", FAST.model_copy(update={"max_rows": None}), inputs) == plain
    assert model_key("lightgbm", "cpu", FAST.model_copy(update={"max_rows": 10}), inputs) != plain


@pytest.mark.parametrize("value", [0, -5])
def test_a_cap_below_one_is_a_config_error_naming_the_key(value: int) -> None:
    with pytest.raises(ConfigError, match="max_rows: Input should be greater than or equal to 1"):
        validate_config(TabularConfig, {"max_rows": value})
