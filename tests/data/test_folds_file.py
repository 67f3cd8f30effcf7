"""``folds.csv`` on disk: skipped tiles, damaged files, and the dataset opened with it."""

from collections.abc import Callable
from pathlib import Path

import pytest

from kelp.data.config import FoldsConfig
from kelp.data.folds import make_folds
from kelp.data.folds_file import read_folds, read_run_folds, write_folds
from kelp.data.stage import split_dataset
from kelp.errors import DatasetError, InputError
from kelp.layout import RunLayout


def _truncate_first_train_tile(root: Path) -> str:
    path = sorted((root / "train_satellite").glob("*.tif"))[0]
    path.write_bytes(path.read_bytes()[:200])
    return path.name.split("_")[0]


def test_skipped_tiles_round_trip(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset(n_areas=6, dates=2)
    victim = _truncate_first_train_tile(root)
    assignment = make_folds(root, k=2, exclude={})
    assert victim not in assignment.tile_ids and dict(assignment.skipped)[victim]
    path = write_folds(assignment, tmp_path / "folds.csv")
    assert path.read_text().splitlines()[0].endswith(",skipped")
    again = read_folds(path)
    assert again.skipped == assignment.skipped and again.tile_ids == assignment.tile_ids
    # the dataset opens with it: the skipped tile's problem is excused, nothing else
    folds, catalog = read_run_folds(path, root)
    assert folds.tile_ids == assignment.tile_ids and len(catalog.train) == 12


def test_without_exclude_a_bad_tile_stops_make_folds(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=6, dates=2)
    _truncate_first_train_tile(root)
    with pytest.raises(DatasetError, match="truncated"):
        make_folds(root, k=2)


def test_folds_stage_fail_or_skip(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset(n_areas=6, dates=2)
    victim = _truncate_first_train_tile(root)
    layout = RunLayout.of(tmp_path, root)
    with pytest.raises(DatasetError, match="A0000000_satellite.tif: size 200 bytes"):
        split_dataset(FoldsConfig(k=2, on_error="fail"), layout)
    assert not layout.folds.exists()  # nothing half-made
    summary = split_dataset(FoldsConfig(k=2), layout)  # skip: the default of `kelp run`
    assert list(summary["skipped"]) == [victim] and summary["n_train"] == 11


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("tile_id,aoi_id,fold\nAB1,a\n", "line 2: 3 columns expected"),
        ("tile_id,aoi_id,fold\nAB1,a,0,extra\n", "line 2: 3 columns expected"),
        (b"\xff\xfe\x00garbage", "not a readable CSV"),
    ],
)
def test_damaged_folds_files_are_named(tmp_path: Path, text: str | bytes, match: str) -> None:
    path = tmp_path / "folds.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=match):
        read_folds(path)


def test_a_bad_tile_that_was_not_skipped_is_still_an_error(
    tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    root = tiny_dataset(n_areas=6, dates=2)
    path = write_folds(make_folds(root, k=2), tmp_path / "folds.csv")
    (root / "train_kelp" / sorted(p.name for p in (root / "train_kelp").iterdir())[0]).unlink()
    with pytest.raises(DatasetError, match="problem"):
        read_run_folds(path, root)
