import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from kelp.data.catalog import open_catalog, scan_catalog
from kelp.errors import DatasetError


def test_kelp_wanted_layout_with_metadata(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=2, dates=2, n_test=1)
    catalog = open_catalog(root)
    assert catalog.layout == "kelp-wanted"
    assert catalog.metadata == root / "metadata.csv"
    assert [t.tile_id for t in catalog.train] == ["A0000000", "A0000001", "A0100000", "A0100001"]
    assert [t.tile_id for t in catalog.test] == ["T0000000"]
    assert all(t.mask is not None and t.mask.parent.name == "train_kelp" for t in catalog.train)
    assert catalog.test[0].mask is None


def test_kelp_wanted_layout_without_metadata(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=2, dates=1, n_test=2)
    (root / "metadata.csv").unlink()
    catalog = open_catalog(root)
    assert catalog.metadata is None
    assert (len(catalog.train), len(catalog.test)) == (2, 2)


def test_plain_folder(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=2, dates=1, n_test=1, layout="folder")
    catalog = open_catalog(root)
    assert catalog.layout == "folder"
    assert (len(catalog.train), len(catalog.test)) == (2, 1)


def _edit_metadata(root: Path, edit: Callable[[list[dict[str, str]]], None]) -> None:
    path = root / "metadata.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    edit(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_metadata_naming_missing_files_lists_each(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=2, dates=1, n_test=0)
    (root / "train_satellite" / "A0000000_satellite.tif").unlink()
    (root / "train_kelp" / "A0100000_kelp.tif").unlink()
    catalog, problems = scan_catalog(root)
    messages = [str(p) for p in problems]
    assert any("A0000000_satellite.tif: listed in metadata.csv" in m for m in messages)
    assert any("A0100000_kelp.tif: listed in metadata.csv" in m for m in messages)
    # the tile whose image is gone still has its mask: an orphan
    assert any("A0000000_kelp.tif: kelp mask without an image" in m for m in messages)
    assert catalog.train == ()
    with pytest.raises(DatasetError, match="problem"):
        open_catalog(root)


def test_duplicate_tile_ids(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=2, dates=1, n_test=0)
    (root / "metadata.csv").unlink()
    (root / "test_satellite").mkdir()
    image = root / "train_satellite" / "A0000000_satellite.tif"
    (root / "test_satellite" / image.name).write_bytes(image.read_bytes())
    catalog, problems = scan_catalog(root)
    assert [p.tile_id for p in problems] == ["A0000000"]
    assert "duplicate tile id 'A0000000'" in str(problems[0])
    assert [t.tile_id for t in catalog.tiles] == ["A0100000"]


def test_duplicate_rows_in_metadata(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=1, dates=1, n_test=0)
    _edit_metadata(root, lambda rows: rows.append(dict(rows[0])))
    _, problems = scan_catalog(root)
    assert any("duplicate" in str(p) and p.tile_id == "A0000000" for p in problems)


def test_truncated_file_caught_by_size_and_md5(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=1, dates=1, n_test=0)
    mask = root / "train_kelp" / "A0000000_kelp.tif"
    mask.write_bytes(mask.read_bytes()[:-10])
    _, problems = scan_catalog(root)
    assert any("truncated" in str(p) for p in problems)

    def wrong_md5(rows: list[dict[str, str]]) -> None:
        rows[0]["md5_hash"] = "0" * 32
        rows[0]["filesize_bytes"] = ""

    _edit_metadata(root, wrong_md5)
    assert not any("MD5" in str(p) for p in scan_catalog(root)[1])
    assert any("MD5 differs" in str(p) for p in scan_catalog(root, verify_md5=True)[1])


def test_train_image_without_mask(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=1, dates=2, n_test=0)
    (root / "metadata.csv").unlink()
    (root / "train_kelp" / "A0000001_kelp.tif").unlink()
    _, problems = scan_catalog(root)
    assert [(p.tile_id, p.message) for p in problems] == [
        ("A0000001", "train image has no kelp mask")
    ]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda tmp: tmp / "nowhere", "folder not found"),
        (lambda tmp: tmp, "no tiles found"),
        (lambda tmp: (tmp / "f.txt").write_text("x") and tmp / "f.txt", "is a file"),
    ],
    ids=["missing", "empty", "file"],
)
def test_bad_roots(tmp_path: Path, make: Callable[[Path], Path], match: str) -> None:
    root = make(tmp_path)
    with pytest.raises(DatasetError, match=match) as info:
        open_catalog(root)
    assert str(root) in str(info.value)


def test_bad_metadata_row(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=1, dates=1, n_test=0)
    _edit_metadata(root, lambda rows: rows[0].update(type="cloud"))
    _, problems = scan_catalog(root)
    assert any("line 2" in str(p) and "type satellite|kelp" in str(p) for p in problems)
