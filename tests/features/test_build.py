import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from kelp.config import validate_config
from kelp.data.catalog import open_catalog
from kelp.data.folds import make_folds
from kelp.data.folds_file import read_folds, write_folds
from kelp.data.io import read_mask
from kelp.data.tile import load_tile
from kelp.errors import DatasetError, InputError
from kelp.features import build as build_module
from kelp.features.build import KEY_COLUMNS, build_features
from kelp.features.config import FeatureConfig, FilterConfig, SamplingConfig
from kelp.features.manifest import read_manifest
from kelp.features.stack import build_channels
from kelp.layout import RunLayout

SMALL = FeatureConfig(
    indices=("NDVI", "NDWI"),
    filters=FilterConfig(channels=("nir",), sigmas=(1.0, 2.0)),
    sampling=SamplingConfig(n_random=60),
)


@pytest.fixture
def dataset(tiny_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    root = tiny_dataset(n_areas=4, dates=2, n_test=1)
    folds = write_folds(make_folds(root, k=2, seed=0), tmp_path / "folds.csv")
    return root, folds


def _build(
    root: Path,
    folds: Path,
    out: Path,
    config: FeatureConfig = SMALL,
    *,
    seed: int | None = None,
    workers: int | None = None,
    on_error: Literal["fail", "skip"] | None = None,
) -> dict[str, Any]:
    """`build_features` of dataset ``root`` with ``folds`` into ``out``; the keyword options
    override ``config``'s sampling seed, workers and on_error."""
    update: dict[str, Any] = {}
    if seed is not None:
        update["sampling"] = config.sampling.model_copy(update={"seed": seed})
    if workers is not None:
        update["workers"] = workers
    if on_error is not None:
        update["on_error"] = on_error
    layout = RunLayout.of(out.parent, root, folds=folds, features=out)
    return build_features(config.model_copy(update=update), layout)


def _table(out: Path) -> pl.DataFrame:
    return pl.scan_parquet(out / "table" / "*.parquet").collect().sort("tile_id", "row", "col")


def test_table_reconciles_with_manifest(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    root, folds = dataset
    out = tmp_path / "features"
    manifest = _build(root, folds, out, seed=0)
    assert manifest == read_manifest(out)
    table = _table(out)
    assert table.columns[: len(KEY_COLUMNS)] == list(KEY_COLUMNS)
    assert table.columns[len(KEY_COLUMNS) :] == manifest["feature_names"]
    assert all(table.schema[n] == pl.Float32 for n in manifest["feature_names"])
    assert manifest["n_tiles"] == 8  # train tiles only
    assert manifest["n_rows"] == table.height
    counts = dict(table.group_by("tile_id").len().iter_rows())
    assert counts == {t: v["rows"] for t, v in manifest["tiles"].items()}
    by_kind = table.group_by("tile_id", "kind").len()
    for tile_id, kind, n in by_kind.iter_rows():
        assert manifest["tiles"][tile_id][kind] == n
    # keys agree with the folds file and the masks
    fold_of = dict(pl.read_csv(folds).select("tile_id", "fold").iter_rows())
    assert all(fold_of[t] == f for t, f in table.select("tile_id", "fold").unique().iter_rows())
    first = table.filter(pl.col("tile_id") == "A0000000")
    mask = read_mask(root / "train_kelp" / "A0000000_kelp.tif")
    np.testing.assert_array_equal(first["label"].to_numpy(), mask[first["row"], first["col"]])
    assert set(first.filter(pl.col("label") == 1)["kind"]) == {"kelp"}
    assert first.filter(pl.col("kind") == "kelp").height == mask.sum()
    assert (
        pq.ParquetFile(next((out / "table").glob("*.parquet")))
        .metadata.row_group(0)
        .column(0)
        .compression
        == "ZSTD"
    )
    norm = manifest["normalisation"]
    assert norm["train"]["tiles"] == 8
    assert set(norm["without_fold"]) == {"0", "1"}
    assert norm["without_fold"]["0"]["tiles"] + norm["without_fold"]["1"]["tiles"] == 8
    nir = norm["train"]["channels"]["nir"]
    assert nir["q01"] <= nir["mean"] <= nir["q99"]
    assert nir["valid_pixels"] == 8 * 12 * 12  # every 4th pixel each way
    assert norm["train"]["channels"]["NDVI"]["valid_pixels"] < nir["valid_pixels"]  # water only


def test_table_values_are_the_whole_tile_stack_at_each_row(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    # The build computes most channels only at the sampled pixels: it must not matter.
    root, folds = dataset
    out = tmp_path / "features"
    names = _build(root, folds, out)["feature_names"]
    table = _table(out)
    for record in open_catalog(root).train[:3]:
        rows = table.filter(pl.col("tile_id") == record.tile_id)
        stack = build_channels(load_tile(record), SMALL)[0]
        expected = stack[:, rows["row"].to_numpy(), rows["col"].to_numpy()]
        got = rows.select(names).to_numpy().T
        np.testing.assert_array_equal(got, expected)


def test_parquet_layout_dictionary_and_statistics_on_keys_only(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, folds = dataset
    out = tmp_path / "features"
    _build(root, folds, out)
    meta = pq.ParquetFile(next((out / "table").glob("*.parquet"))).metadata
    assert meta.num_row_groups == 1
    chunks = {
        meta.schema.column(i).name: meta.row_group(0).column(i) for i in range(meta.num_columns)
    }
    dictionary = {name for name, c in chunks.items() if c.has_dictionary_page}
    assert dictionary == {"tile_id", "kind"}  # floats of distinct values gain nothing from it
    with_stats = {name for name, c in chunks.items() if c.is_stats_set}
    assert with_stats == set(KEY_COLUMNS)  # fold and tile_id can prune files in a scan
    assert {c.compression for c in chunks.values()} == {"ZSTD"}
    fold = pl.scan_parquet(out / "table" / "*.parquet").filter(pl.col("fold") == 0).collect()
    assert fold.height > 0 and set(fold["fold"]) == {0}


def test_same_seed_same_rows_any_worker_count(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    root, folds = dataset
    _build(root, folds, tmp_path / "a", seed=1)
    _build(root, folds, tmp_path / "b", seed=1, workers=2)
    _build(root, folds, tmp_path / "c", seed=2)
    a, b, c = _table(tmp_path / "a"), _table(tmp_path / "b"), _table(tmp_path / "c")
    assert a.equals(b)
    assert not a.equals(c)
    manifest_a = read_manifest(tmp_path / "a")
    manifest_b = read_manifest(tmp_path / "b")
    assert manifest_a["normalisation"] == manifest_b["normalisation"]


def test_killed_run_resumes_without_duplicates(
    dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, folds = dataset
    full = tmp_path / "full"
    _build(root, folds, full)
    out = tmp_path / "resumed"
    real = build_module._process
    calls = {"n": 0}

    def dying(job: build_module._Job) -> build_module._TileSummary:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the fourth tile
        return real(job)

    monkeypatch.setattr(build_module, "_process", dying)
    with pytest.raises(KeyboardInterrupt):
        _build(root, folds, out)
    assert len(list((out / "table").glob("*.parquet"))) == 3
    assert not (out / "manifest.json").exists()
    assert not list((out / "table").glob(".*"))  # no temporary file left behind
    monkeypatch.setattr(build_module, "_process", real)
    manifest = _build(root, folds, out)
    assert _table(out).equals(_table(full))
    assert manifest["tiles"] == read_manifest(full)["tiles"]
    assert manifest["normalisation"] == read_manifest(full)["normalisation"]


def test_rerun_skips_done_tiles_and_config_change_rebuilds(
    dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, folds = dataset
    out = tmp_path / "f"
    _build(root, folds, out)
    calls = []
    real = build_module._process
    monkeypatch.setattr(build_module, "_process", lambda job: calls.append(job) or real(job))
    _build(root, folds, out)
    assert calls == []
    changed = SMALL.model_copy(update={"indices": ("NDVI",)})
    manifest = _build(root, folds, out, changed)
    assert len(calls) == 8
    assert "NDWI" not in _table(out).columns
    assert manifest["table_hash"] == changed.table_hash()


def test_corrupt_tile_fail_keeps_written_and_skip_lists_it(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, folds = dataset
    (root / "metadata.csv").unlink()
    bad = root / "train_satellite" / "A0200000_satellite.tif"
    bad.write_bytes(b"corrupt")
    out = tmp_path / "f"
    with pytest.raises(InputError, match="A0200000_satellite.tif") as info:
        _build(root, folds, out)
    assert "already written are kept" in str(info.value)
    written = sorted(p.stem for p in (out / "table").glob("*.parquet"))
    assert written == ["A0000000", "A0000001", "A0100000", "A0100001"]  # tiles before it
    manifest = _build(root, folds, out, on_error="skip")
    assert [s["tile_id"] for s in manifest["skipped"]] == ["A0200000"]
    assert "not a readable GeoTIFF" in manifest["skipped"][0]["reason"]
    assert manifest["n_tiles"] == 7
    assert "A0200000" not in set(_table(out)["tile_id"])


def test_catalogue_problem_fail_or_skip(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    root, folds = dataset
    (root / "train_kelp" / "A0100001_kelp.tif").unlink()  # listed in metadata, now missing
    with pytest.raises(DatasetError, match="A0100001_kelp.tif"):
        _build(root, folds, tmp_path / "f")
    manifest = _build(root, folds, tmp_path / "f", on_error="skip")
    assert "A0100001" in {s["tile_id"] for s in manifest["skipped"]}
    assert manifest["n_tiles"] == 7


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"indices": ("NDVX",)}, "NDVX"),
        ({"on_error": "ignore"}, "on_error"),
        ({"workers": 0}, "workers"),
        ({"filters": {"sigmas": (100.0,)}}, "larger than"),
    ],
)
def test_bad_arguments(
    dataset: tuple[Path, Path], tmp_path: Path, values: dict[str, object], match: str
) -> None:
    root, folds = dataset
    layout = RunLayout.of(tmp_path, root, folds=folds, features=tmp_path / "f")
    with pytest.raises(ValueError, match=match):
        build_features(validate_config(FeatureConfig, values), layout)


def test_dense_mode_keeps_every_pixel(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    root, folds = dataset
    cfg = SMALL.model_copy(update={"sampling": SamplingConfig(dense=True)})
    manifest = _build(root, folds, tmp_path / "d", cfg)
    assert manifest["n_rows"] == 8 * 48 * 48
    assert set(_table(tmp_path / "d")["kind"]) == {"dense"}
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["config"]["sampling"]["dense"]


def test_normalisation_statistics_are_exact_per_fold_set(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, folds = dataset
    manifest = _build(root, folds, tmp_path / "f")
    catalog = open_catalog(root)
    assignment = read_folds(folds, catalog)
    names = manifest["feature_names"]
    for fold in ("0", "1"):
        stacks = [
            build_channels(load_tile(r), SMALL)[0][:, ::4, ::4]
            for r in catalog.train
            if assignment.fold_of(r.tile_id) != int(fold)
        ]
        values = np.concatenate([s.reshape(len(names), -1) for s in stacks], axis=1)
        stats = manifest["normalisation"]["without_fold"][fold]["channels"]
        for i, name in enumerate(names):
            if stats[name]["mean"] is None:
                assert np.isnan(values[i]).all()
                continue
            assert stats[name]["mean"] == pytest.approx(np.nanmean(values[i]), rel=1e-5, abs=1e-5)
            assert stats[name]["std"] == pytest.approx(np.nanstd(values[i]), rel=1e-4, abs=1e-5)
