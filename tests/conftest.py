"""Shared fixtures: tiny hand-made datasets written with the package's own writers."""

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from kelp.bands import MISSING
from kelp.data.catalog import METADATA_COLUMNS, file_md5
from kelp.data.io import write_image, write_mask

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZE = 48


def make_image(
    rng: np.random.Generator, dem: np.ndarray, kelp: np.ndarray | None = None
) -> np.ndarray:
    """A ``(7, H, W)`` int image on the Kelp Wanted DN scale around a given DEM."""
    h, w = dem.shape
    land = dem > 0  # a missing DEM pixel shows sea spectra
    image = np.empty((7, h, w), np.int32)
    water = np.array([7600, 7800, 7700, 8200, 8600])
    soil = np.array([16000, 15000, 11000, 10000, 9500])
    for b in range(5):
        image[b] = np.where(land, soil[b], water[b]) + rng.integers(-50, 50, (h, w))
    if kelp is not None:
        image[1][kelp.astype(bool)] += 1500
    image[5] = 0
    image[6] = dem
    return image


def make_dem(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A smooth random DEM with a coastline: land > 0, sea = 0."""
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 8)
    field = (field - field.mean()) / (field.std() + 1e-9)
    return np.where(field > 0, (field * 120).astype(np.int32) + 1, 0)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a tiny dataset; returns its root.

    Areas get a random DEM each, shown on ``dates`` tiles that differ by noise and a missing
    DEM patch; the first tile of each area has a kelp blob in the sea, the others none.
    """

    def build(
        n_areas: int = 4,
        dates: int = 2,
        n_test: int = 1,
        layout: str = "kelp-wanted",
        size: int = SIZE,
        seed: int = 0,
    ) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / f"data-{layout}-{seed}"
        rows: list[dict[str, object]] = []
        tiles = []
        for area in range(n_areas):
            dem = make_dem(rng, size)
            for date in range(dates):
                seen = dem.copy()
                if date:
                    r, c = rng.integers(0, size - 6, 2)
                    seen[r : r + 6, c : c + 6] = MISSING
                tiles.append((f"A{area:02d}{date:05d}", seen, date == 0))
        for i in range(n_test):
            tiles.append((f"T{i:07d}", make_dem(rng, size), None))
        for tile_id, dem, has_kelp in tiles:
            split = "test" if has_kelp is None else "train"
            kelp = None
            if has_kelp is not None:
                kelp = np.zeros_like(dem, np.uint8)
                sea = np.argwhere(dem <= 0)
                if has_kelp and len(sea):
                    r, c = sea[len(sea) // 2]
                    kelp[max(r - 2, 0) : r + 2, max(c - 2, 0) : c + 2] = 1
                    kelp[dem > 0] = 0
            image = make_image(rng, dem, kelp)
            if layout == "kelp-wanted":
                image_path = root / f"{split}_satellite" / f"{tile_id}_satellite.tif"
                mask_path = root / "train_kelp" / f"{tile_id}_kelp.tif"
            else:
                image_path = root / f"{tile_id}_satellite.tif"
                mask_path = root / f"{tile_id}_kelp.tif"
            write_image(image_path, image)
            files = [(image_path, "satellite")]
            if kelp is not None:
                write_mask(mask_path, kelp)
                files.append((mask_path, "kelp"))
            for path, kind in files:
                rows.append(
                    {
                        "tile_id": tile_id,
                        "filename": path.name,
                        "md5_hash": file_md5(path),
                        "filesize_bytes": path.stat().st_size,
                        "type": kind,
                        "in_train": split == "train",
                    }
                )
        if layout == "kelp-wanted":
            with open(root / "metadata.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        return root

    return build
