from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

from kelp.bands import MISSING
from kelp.data.check import STAT_COLUMNS, check_dataset, tile_stats, write_stats
from kelp.data.io import read_image, write_image, write_mask
from kelp.data.tile import Tile, load_tile
from kelp.errors import TileError


def _tile(image: np.ndarray, mask: np.ndarray | None) -> Tile:
    return Tile("X", image, mask, rasterio.Affine.identity())


def test_tile_stats_values() -> None:
    image = np.zeros((7, 10, 10), np.int32)
    image[6, :, :5] = 10  # left half land
    image[6, 0, 9] = MISSING  # one missing DEM pixel
    image[5, :2] = 1  # 20 QA pixels
    image[1, 9, :] = MISSING  # 10 missing NIR pixels
    mask = np.zeros((10, 10), np.uint8)
    mask[4, 6:9] = 1
    stats = tile_stats(_tile(image, mask))
    assert stats["has_kelp"] is True
    assert stats["kelp_pct"] == pytest.approx(3.0)
    assert stats["qa_corrupted_pct"] == pytest.approx(20.0)
    assert stats["missing_pct"] == pytest.approx(10.0)
    assert stats["dem_missing_pct"] == pytest.approx(1.0)
    assert stats["water_pct"] == pytest.approx(49.0)
    assert stats["almost_all_water"] is False
    assert stats["high_kelp_pct"] is False
    assert stats["qa_ok"] is False
    assert stats["high_corrupted"] is False


def test_tile_stats_flags_all_water_high_kelp_and_test_tiles() -> None:
    image = np.zeros((7, 10, 10), np.int32)
    image[5, :5] = 1
    stats = tile_stats(_tile(image, np.ones((10, 10), np.uint8)))
    assert stats["almost_all_water"] is True
    assert stats["high_kelp_pct"] is True
    assert stats["high_corrupted"] is True
    test = tile_stats(_tile(image, None))
    assert test["has_kelp"] is None and test["kelp_pct"] is None


def test_all_missing_tile_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "Z_satellite.tif"
    write_image(path, np.full((7, 8, 8), MISSING, np.int32))
    with pytest.raises(TileError, match="every pixel is missing"):
        load_tile(path)


def test_check_lists_every_problem_and_keeps_good_tiles(
    tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    root = tiny_dataset(n_areas=3, dates=2, n_test=1)
    (root / "metadata.csv").unlink()
    train = root / "train_satellite"
    # 6 bands instead of 7
    image, _ = read_image(train / "A0000000_satellite.tif")
    with rasterio.open(
        train / "A0000000_satellite.tif", "w", driver="GTiff", count=6, height=48, width=48,
        dtype="int16",
    ) as dst:  # fmt: skip
        dst.write(image[:6].astype(np.int16))
    # mask shape mismatch
    write_mask(root / "train_kelp" / "A0000001_kelp.tif", np.zeros((40, 48), np.uint8))
    # mask with values other than 0/1
    with rasterio.open(
        root / "train_kelp" / "A0100000_kelp.tif", "w", driver="GTiff", count=1, height=48,
        width=48, dtype="uint8",
    ) as dst:  # fmt: skip
        dst.write(np.full((1, 48, 48), 255, np.uint8))
    # not a TIFF, and an all-missing tile
    (train / "A0100001_satellite.tif").write_text("garbage")
    write_image(train / "A0200000_satellite.tif", np.full((7, 48, 48), MISSING, np.int32))

    report = check_dataset(root)
    found = {p.tile_id: p.message for p in report.problems}
    assert set(found) == {"A0000000", "A0000001", "A0100000", "A0100001", "A0200000"}
    assert "has 6 bands" in found["A0000000"]
    assert "mask shape (40, 48) differs" in found["A0000001"]
    assert "found 255" in found["A0100000"]
    assert "not a readable GeoTIFF" in found["A0100001"]
    assert "every pixel is missing" in found["A0200000"]
    assert [s["tile_id"] for s in report.stats] == ["A0200001", "T0000000"]
    assert not report.ok

    out = write_stats(report.stats, tmp_path / "stats.csv")
    lines = out.read_text().splitlines()
    assert lines[0].split(",") == list(STAT_COLUMNS)
    assert len(lines) == 3


def test_check_clean_dataset_and_warning(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=2, dates=1, n_test=0, layout="folder")
    assert check_dataset(root).ok
    write_mask(root / "A0000000_kelp.tif", np.ones((48, 48), np.uint8))
    report = check_dataset(root)
    assert report.ok
    assert [w.tile_id for w in report.warnings] == ["A0000000"]
    assert "likely mislabelled" in report.warnings[0].message


def test_check_float_image(tmp_path: Path) -> None:
    with rasterio.open(
        tmp_path / "F0000000_satellite.tif", "w", driver="GTiff", count=7, height=8, width=8,
        dtype="float32",
    ) as dst:  # fmt: skip
        dst.write(np.zeros((7, 8, 8), np.float32))
    report = check_dataset(tmp_path)
    assert [(p.tile_id, "float32" in p.message) for p in report.problems] == [("F0000000", True)]
