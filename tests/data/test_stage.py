"""The data stages: the dataset (synthesised on request) and the folds stage."""

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from kelp.data.config import DataConfig, FoldsConfig, SynthConfig
from kelp.data.folds_file import read_folds
from kelp.data.stage import prepare_dataset, split_dataset
from kelp.errors import InputError
from kelp.layout import RunLayout


def test_split_dataset_writes_folds_and_statistics(
    tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    data = tiny_dataset(n_areas=6, dates=2)
    layout = RunLayout.of(tmp_path / "run", data)
    summary = split_dataset(FoldsConfig(k=3), layout)
    folds = read_folds(layout.folds)
    assert summary["k"] == folds.k == 3
    assert summary["n_train"] == len(folds.tile_ids) == 12
    assert summary["n_areas"] == 6 and summary["area_ari"] is None  # not a synthetic set
    assert [f["tiles"] for f in summary["per_fold"]] == [
        int((folds.folds == k).sum()) for k in range(3)
    ]
    assert sum(f["with_kelp"] for f in summary["per_fold"]) == 6  # one kelp tile per area
    with open(layout.tile_stats) as f:
        assert len(list(csv.DictReader(f))) == 13  # train and test tiles


def test_split_dataset_adopts_a_folds_file(
    tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    data = tiny_dataset(n_areas=6, dates=2)
    first = RunLayout.of(tmp_path / "a", data)
    split_dataset(FoldsConfig(k=2, seed=5), first)
    second = RunLayout.of(tmp_path / "b", data)
    summary = split_dataset(FoldsConfig(file=first.folds), second)
    assert summary["k"] == 2
    assert second.folds.read_text() == first.folds.read_text()


def test_prepare_dataset_without_data_or_synth_says_what_to_do(tmp_path: Path) -> None:
    layout = RunLayout.of(tmp_path, tmp_path / "missing")
    with pytest.raises(InputError, match=r"missing: dataset folder not found.*\[data.synth\]"):
        prepare_dataset(DataConfig(path=tmp_path / "missing"), layout)


def test_prepare_dataset_synthesises_once(tmp_path: Path) -> None:
    layout = RunLayout.of(tmp_path)
    config = DataConfig(synth=SynthConfig(tiles=4, size=48, test_fraction=0.0))
    data = prepare_dataset(config, layout)
    assert data == tmp_path / "data" and (data / "metadata.csv").is_file()
    stamp = (data / "metadata.csv").stat().st_mtime_ns
    assert prepare_dataset(config, layout) == data  # present: left alone
    assert (data / "metadata.csv").stat().st_mtime_ns == stamp
