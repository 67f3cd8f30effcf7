"""A tiny synthetic dataset and folds shared by the baseline tests, and hand-made tiles.

30 synthetic 64 px tiles (with test truth in ``test_kelp/``) in 3 area-grouped folds made
from the generator's own areas, so no DEM grouping runs; built once per session (~1 s).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from kelp.data.folds import FoldAssignment, split_areas
from kelp.data.folds_file import write_folds
from kelp.data.synth import synthesize
from kelp.data.tile import Tile

FAST = {"seed": 0, "max_rows": 20_000, "n_jobs": 1}  # one thread: no OpenMP spinning in CI


@dataclass(frozen=True)
class Synth:
    """A dataset folder and its folds file."""

    data: Path
    folds_csv: Path
    folds: FoldAssignment


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    root = tmp_path_factory.mktemp("baselines")
    data = synthesize(root / "data", 30, seed=1, size=64, test_fraction=0.15).root
    with open(data / "synthetic_areas.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    areas = np.array([r["aoi_id"] for r in rows])
    strata = np.array([int(r["kelp_pixels"]) > 0 for r in rows])
    folds = split_areas(areas, strata, k=3, seed=0)
    assignment = FoldAssignment(tuple(r["tile_id"] for r in rows), tuple(areas), folds)
    return Synth(data, write_folds(assignment, root / "folds.csv"), assignment)


def make_tile(image: np.ndarray, mask: np.ndarray | None = None, tile_id: str = "HAND0001") -> Tile:
    """A :class:`Tile` straight from a ``(7, H, W)`` array (no file)."""
    return Tile(tile_id, image.astype(np.int32), mask, Affine.identity())


def water_image(h: int = 6, w: int = 6) -> np.ndarray:
    """``(7, H, W)``: clear sea everywhere, bands SWIR..Blue = 100, 200, 50, 300, 400."""
    image = np.zeros((7, h, w), np.int32)
    for b, value in enumerate((100, 200, 50, 300, 400)):
        image[b] = value
    return image
