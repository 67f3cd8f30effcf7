"""Cross-validated scoring of the candidates: fold k's meta-models never see fold k."""

from pathlib import Path

import numpy as np
import pytest

from kelp.data.catalog import open_catalog
from kelp.data.folds_file import read_folds
from kelp.errors import InputError
from kelp.features.manifest import read_build
from kelp.layout import RunLayout
from kelp.maps import MapStore
from kelp.stacking.config import MetaName, StackConfig
from kelp.stacking.crossval import AVERAGE, fit_meta, fused_probability, score_folds
from kelp.stacking.inputs import open_base_maps
from kelp.stacking.meta import MetaModel
from kelp.stacking.samples import Rows, sample_rows

CONFIG = StackConfig(compare=("average", "logistic"), meta="logistic")


def test_fold_k_is_scored_by_meta_models_fit_on_the_other_folds_only(
    oof_run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = oof_run
    catalog = open_catalog(data)
    assignment = read_folds(run / "folds.csv", catalog)
    base = open_base_maps(RunLayout.of(run), assignment)
    records = {r.tile_id: r for r in catalog.train}
    tile_ids = sorted(base.fold_of)
    band_order = read_build(run / "features").band_order
    rows, truths = sample_rows(tile_ids, records, base, band_order, CONFIG)
    fits: list[tuple[MetaName, set[int], set[int], MetaModel]] = []

    def spy(name: MetaName, train: list[Rows], config: StackConfig) -> MetaModel:
        meta = fit_meta(name, train, config)
        fits.append((name, {r.fold for r in train}, {id(r) for r in train}, meta))
        return meta

    store = MapStore(tmp_path / "fused")
    counts = score_folds(tile_ids, rows, truths, base, 3, CONFIG, {"logistic": store}, spy)

    assert [(name, folds) for name, folds, _, _ in fits] == [
        (m, {0, 1, 2} - {k}) for k in range(3) for m in CONFIG.compare
    ]
    for name, folds, ids, _ in fits:  # every row of the other folds' tiles, nothing else
        assert ids == {id(rows[t]) for t in tile_ids if base.fold_of[t] in folds}, name
    assert set(counts) == {"cnn", "xgboost", AVERAGE, "stack-average", "stack-logistic"}
    for k in range(3):
        held_out = [t for t in tile_ids if base.fold_of[t] == k]
        meta = next(m for n, folds, _, m in fits if n == CONFIG.meta and k not in folds)
        for per_fold in counts.values():  # each candidate counted on every held-out pixel
            at_half = per_fold[k].at(0.5)
            assert per_fold[k].n_tiles == len(held_out)
            assert at_half.tp + at_half.fp + at_half.fn + at_half.tn == len(held_out) * 48 * 48
        for tile_id in held_out:  # the fused map written is that of the fold's own model
            expected = fused_probability(meta, base.logits(tile_id), truths[tile_id].land_mask())
            np.testing.assert_allclose(store.read(tile_id), expected, atol=1e-6)
    assert store.tile_ids() == tile_ids


def test_each_meta_model_named_gets_its_own_cross_validated_maps(
    oof_run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = oof_run
    catalog = open_catalog(data)
    base = open_base_maps(RunLayout.of(run), read_folds(run / "folds.csv", catalog))
    records = {r.tile_id: r for r in catalog.train}
    tile_ids = sorted(base.fold_of)
    config = StackConfig(compare=("average", "logistic"), meta="best")
    rows, truths = sample_rows(
        tile_ids, records, base, read_build(run / "features").band_order, config
    )
    fits: dict[tuple[MetaName, frozenset[int]], MetaModel] = {}

    def spy(name: MetaName, train: list[Rows], config: StackConfig) -> MetaModel:
        fits[name, frozenset(r.fold for r in train)] = meta = fit_meta(name, train, config)
        return meta

    stores = {m: MapStore(tmp_path / m) for m in config.compare}
    score_folds(tile_ids, rows, truths, base, 3, config, stores, spy)
    for name, store in stores.items():
        assert store.tile_ids() == tile_ids
        for k in range(3):
            meta = fits[name, frozenset({0, 1, 2} - {k})]
            for tile_id in (t for t in tile_ids if base.fold_of[t] == k):
                land = truths[tile_id].land_mask()
                expected = fused_probability(meta, base.logits(tile_id), land)
                np.testing.assert_allclose(store.read(tile_id), expected, atol=1e-6)


def test_no_kelp_among_the_rows_is_refused() -> None:
    rng = np.random.default_rng(0)
    rows = [
        Rows(f, rng.normal(size=(30, 2)), None, np.zeros(30, np.uint8), np.ones(30)) for f in (0, 1)
    ]
    with pytest.raises(InputError, match="no kelp pixel"):
        fit_meta("logistic", rows, CONFIG)
    rows[1].label[:5] = 1
    assert fit_meta("logistic", rows, CONFIG).predict_logit(rows[0].plain).shape == (30,)
