"""`[stacking] max_rows`: the meta-models' rows bounded per tile, weights corrected, seeded."""

from pathlib import Path

import numpy as np
import pytest

from kelp.config import validate_config
from kelp.data.catalog import open_catalog
from kelp.data.folds_file import read_folds
from kelp.errors import ConfigError
from kelp.features.manifest import read_build
from kelp.layout import RunLayout
from kelp.pipeline.config import RunConfig
from kelp.stacking.config import StackConfig
from kelp.stacking.inputs import open_base_maps
from kelp.stacking.samples import Rows, sample_rows
from kelp.stacking.stack import stack


def _rows(run: Path, data: Path, config: StackConfig) -> dict[str, Rows]:
    catalog = open_catalog(data)
    base = open_base_maps(RunLayout.of(run), read_folds(run / "folds.csv", catalog))
    records = {r.tile_id: r for r in catalog.train}
    band_order = read_build(run / "features").band_order
    return sample_rows(sorted(base.fold_of), records, base, band_order, config)[0]


def test_cap_keeps_a_weighted_subset_of_each_tiles_rows(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    full = _rows(run, data, StackConfig())
    capped = _rows(run, data, StackConfig(max_rows=120))
    per_tile = 10  # ceil(120 / 12 tiles)
    assert len(capped) == len(full) == 12
    for tile_id, rows in capped.items():
        whole = full[tile_id]
        n = len(whole.label)
        assert n > per_tile and len(rows.label) == per_tile
        assert rows.sampled == whole.sampled == n
        # every kept row is one of the uncapped rows, with its weight scaled by n / kept
        weights: dict[tuple[float, ...], list[float]] = {}
        for p, w in zip(whole.plain, whole.weight, strict=True):
            weights.setdefault(tuple(p.tolist()), []).append(float(w))
        for p, w in zip(rows.plain, rows.weight, strict=True):
            found = weights.get(tuple(p.tolist()), [])
            assert any(np.isclose(float(w), v * n / per_tile, rtol=1e-5) for v in found)
    again = _rows(run, data, StackConfig(max_rows=120))
    for tile_id in capped:  # seeded: the same rows every time
        np.testing.assert_array_equal(again[tile_id].plain, capped[tile_id].plain)
    other = _rows(run, data, StackConfig(max_rows=120, seed=1))
    assert any(not np.array_equal(other[t].plain, capped[t].plain) for t in capped), (
        "the seed does not change the draw"
    )


def test_cap_above_the_rows_keeps_everything(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    full = _rows(run, data, StackConfig())
    loose = _rows(run, data, StackConfig(max_rows=10**9))
    for tile_id, rows in loose.items():
        np.testing.assert_array_equal(rows.plain, full[tile_id].plain)
        np.testing.assert_array_equal(rows.weight, full[tile_id].weight)


def test_stack_manifest_records_rows_sampled_and_kept(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    config = StackConfig(compare=("logistic",), max_rows=120, grid_tiles=0)
    manifest = stack(config, RunLayout.of(run, data))
    assert manifest["rows"]["kept"] == 120
    assert manifest["rows"]["sampled"] > 120
    assert manifest["rows"]["max_rows"] == 120


@pytest.mark.parametrize("value", [0, -5])
def test_row_cap_must_be_positive(value: int) -> None:
    with pytest.raises(ConfigError, match=r"stacking\.max_rows"):
        validate_config(RunConfig, {"stacking": {"max_rows": value}})
