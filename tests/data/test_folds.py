import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kelp.data.catalog import open_catalog
from kelp.data.folds import FOLD_FLAGS, area_recovery, make_folds
from kelp.data.folds_file import read_folds, write_folds
from kelp.data.io import write_mask
from kelp.data.synth import synthesize
from kelp.errors import DatasetError, InputError


def test_folds_keep_areas_together(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset(n_areas=8, dates=3, n_test=2)
    folds = make_folds(root, k=4, seed=0)
    assert folds.k == 4
    assert len(folds.tile_ids) == 24  # test tiles get no fold
    # the generator's areas are the tile id's first three characters
    areas = {t[:3] for t in folds.tile_ids}
    assert len(set(folds.aoi_ids)) == len(areas)
    for area in areas:
        assert len({f for t, f in zip(folds.tile_ids, folds.folds) if t[:3] == area}) == 1
    assert all(len(folds.tiles_in(f)) > 0 for f in range(4))
    assert folds.fold_of(folds.tile_ids[5]) == folds.folds[5]

    path = write_folds(folds, tmp_path / "folds.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["tile_id", "aoi_id", "fold", *FOLD_FLAGS]
    back = read_folds(path, open_catalog(root))
    assert back.tile_ids == folds.tile_ids
    np.testing.assert_array_equal(back.folds, folds.folds)
    assert back.flags == folds.flags


def test_cosine_method_still_available(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=8, dates=3, n_test=0)
    ncc, cosine = make_folds(root, k=4), make_folds(root, k=4, method="cosine")
    assert ncc.aoi_ids == cosine.aoi_ids  # both exact on unshifted dates
    np.testing.assert_array_equal(ncc.folds, cosine.folds)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threshold": 1.5}, r"threshold must be in \(0, 1\)"), ({"method": "x"}, "method must be")],
)
def test_bad_grouping_arguments(
    tiny_dataset: Callable[..., Path], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        make_folds(tiny_dataset(n_areas=4, dates=2, n_test=0), k=2, **kwargs)


def test_folds_are_seeded(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=10, dates=2, n_test=0)
    a = make_folds(root, k=3, seed=1).folds
    np.testing.assert_array_equal(a, make_folds(root, k=3, seed=1).folds)
    others = [make_folds(root, k=3, seed=s).folds for s in range(2, 6)]
    assert any(not np.array_equal(a, o) for o in others)


def test_stratification_spreads_kelp_tiles(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=9, dates=2, n_test=0)
    folds = make_folds(root, k=3, seed=0)
    kelp_per_fold = np.bincount(
        [f for f, flags in zip(folds.folds, folds.flags) if flags["has_kelp"]], minlength=3
    )
    assert kelp_per_fold.tolist() == [3, 3, 3]


@pytest.mark.parametrize(("k", "match"), [(1, "k must be >= 2"), (5, "only 4 area")])
def test_bad_k(tiny_dataset: Callable[..., Path], k: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_folds(tiny_dataset(n_areas=4, dates=2, n_test=0), k=k)


def test_too_few_tiles_per_stratum(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=4, dates=1, n_test=0)  # 4 areas, each one tile with kelp
    write_mask(root / "train_kelp" / "A0000000_kelp.tif", np.zeros((48, 48), np.uint8))
    (root / "metadata.csv").unlink()
    with pytest.raises(ValueError, match="is shared by k=4 train tiles"):
        make_folds(root, k=4)


def test_folds_refuse_a_broken_dataset(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=3, dates=1, n_test=0)
    (root / "train_satellite" / "A0100000_satellite.tif").write_text("x")
    with pytest.raises(DatasetError, match="A0100000_satellite.tif"):
        make_folds(root, k=2)


def _write(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


GOOD = [("A0000000", "a", "0"), ("A0000001", "a", "0"), ("A0100000", "b", "1"),
        ("A0100001", "b", "1")]  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        (GOOD[:3], ("tile_id", "aoi_id", "fold"), "1 train tile\\(s\\) without a fold"),
        ([*GOOD, ("ZZ", "c", "1")], ("tile_id", "aoi_id", "fold"), "not among the dataset"),
        (
            [*GOOD[:3], ("A0100001", "a", "1")],
            ("tile_id", "aoi_id", "fold"),
            "area a is on folds \\[0, 1\\]",
        ),
        ([*GOOD, GOOD[0]], ("tile_id", "aoi_id", "fold"), "A0000000 repeated"),
        ([(t, a, "0") for t, a, _ in GOOD], ("tile_id", "aoi_id", "fold"), "at least 2 folds"),
        (
            [(t, a, str(2 * int(f))) for t, a, f in GOOD],
            ("tile_id", "aoi_id", "fold"),
            "numbered 0..k-1",
        ),
        ([(*GOOD[0][:2], "x"), *GOOD[1:]], ("tile_id", "aoi_id", "fold"), "not an integer"),
        ([(t, f) for t, _, f in GOOD], ("tile_id", "split"), "missing column"),
    ],
    ids=["missing-tile", "unknown-tile", "area-two-folds", "repeat", "k1", "gaps", "int", "cols"],
)
def test_user_folds_validation(
    tiny_dataset: Callable[..., Path],
    tmp_path: Path,
    rows: list[tuple[str, ...]],
    header: tuple[str, ...],
    match: str,
) -> None:
    catalog = open_catalog(tiny_dataset(n_areas=2, dates=2, n_test=0))
    path = _write(tmp_path / "user.csv", rows, header)
    with pytest.raises(InputError, match=match) as info:
        read_folds(path, catalog)
    assert str(path) in str(info.value)


def test_user_folds_without_aoi_column(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    catalog = open_catalog(tiny_dataset(n_areas=2, dates=2, n_test=0))
    path = _write(tmp_path / "user.csv", [(t, f) for t, _, f in GOOD], ("tile_id", "fold"))
    folds = read_folds(path, catalog)
    assert folds.k == 2
    assert folds.aoi_ids == folds.tile_ids


def test_missing_folds_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="kelp data folds"):
        read_folds(tmp_path / "nope.csv")


@pytest.mark.slow
def test_grouping_recovers_synthetic_areas(tmp_path: Path) -> None:
    root = synthesize(tmp_path / "synth", 40, seed=1, size=350).root
    folds = make_folds(root, k=3, seed=0)
    assert area_recovery(root, folds) == pytest.approx(1.0)
    with open(root / "synthetic_areas.csv", newline="") as f:
        truth = {row["tile_id"]: row["aoi_id"] for row in csv.DictReader(f)}
    folds_of_area: dict[str, set[int]] = {}
    for tile_id, fold in zip(folds.tile_ids, folds.folds):
        folds_of_area.setdefault(truth[tile_id], set()).add(int(fold))
    assert all(len(f) == 1 for f in folds_of_area.values())  # no true area leaks


def test_area_recovery_is_none_on_real_data(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=4, dates=2, n_test=0)
    assert area_recovery(root, make_folds(root, k=2)) is None
