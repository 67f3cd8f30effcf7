"""Scan a whole dataset: every problem (not just the first) and per-tile statistics.

Statistics per tile (percentages over the tile's pixels, 0-100):

============== =========================================================================
has_kelp       the mask has at least one kelp pixel (empty for test tiles)
kelp_pct       kelp pixels
qa_corrupted_pct  pixels flagged in the QA band (cloud or corrupted)
missing_pct    pixels missing (-32768) in any spectral band or the QA band
dem_missing_pct   pixels missing in the DEM
water_pct      pixels with a valid DEM <= 0 m (sea), over all pixels
almost_all_water  water_pct >= 98 (no coastline: DEM-based area grouping cannot see it)
high_kelp_pct  kelp_pct > 40: more kelp than any real bed covers, likely mislabelled
qa_ok          no QA-flagged and no missing pixel
high_corrupted qa_corrupted_pct + missing_pct > 40
============== =========================================================================

``qa_ok`` and ``high_corrupted`` are the two data-quality flags the folds stratify on.
"""

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kelp._files import atomic_path
from kelp._progress import track
from kelp.bands import DEFAULT_BAND_ORDER, MISSING
from kelp.data.catalog import Catalog, Problem, scan_catalog
from kelp.data.tile import Tile, load_tile
from kelp.errors import TileError

__all__ = [
    "ALMOST_ALL_WATER_PCT",
    "HIGH_CORRUPTED_PCT",
    "HIGH_KELP_PCT",
    "STAT_COLUMNS",
    "CheckReport",
    "check_dataset",
    "tile_stats",
    "write_stats",
]

ALMOST_ALL_WATER_PCT = 98.0
HIGH_KELP_PCT = 40.0
HIGH_CORRUPTED_PCT = 40.0

STAT_COLUMNS = (
    "tile_id",
    "split",
    "height",
    "width",
    "has_kelp",
    "kelp_pct",
    "qa_corrupted_pct",
    "missing_pct",
    "dem_missing_pct",
    "water_pct",
    "almost_all_water",
    "high_kelp_pct",
    "qa_ok",
    "high_corrupted",
)


def tile_stats(tile: Tile) -> dict[str, Any]:
    """Statistics of one tile (see the module docstring for each column).

    Returns:
        A dict keyed by :data:`STAT_COLUMNS` minus ``split``.
    """
    image = tile.image
    qa, dem = tile.band("qa"), tile.band("dem")
    missing = np.any(image[:6] == MISSING, axis=0)
    pct = 100.0 / qa.size
    qa_corrupted = float(np.count_nonzero(qa == 1)) * pct
    missing_pct = float(np.count_nonzero(missing)) * pct
    water_pct = float(np.count_nonzero((dem <= 0) & (dem != MISSING))) * pct
    kelp_pct = None if tile.mask is None else float(np.count_nonzero(tile.mask)) * pct
    return {
        "tile_id": tile.tile_id,
        "height": tile.shape[0],
        "width": tile.shape[1],
        "has_kelp": None if kelp_pct is None else kelp_pct > 0,
        "kelp_pct": kelp_pct,
        "qa_corrupted_pct": qa_corrupted,
        "missing_pct": missing_pct,
        "dem_missing_pct": float(np.count_nonzero(dem == MISSING)) * pct,
        "water_pct": water_pct,
        "almost_all_water": water_pct >= ALMOST_ALL_WATER_PCT,
        "high_kelp_pct": None if kelp_pct is None else kelp_pct > HIGH_KELP_PCT,
        "qa_ok": qa_corrupted == 0 and missing_pct == 0,
        "high_corrupted": qa_corrupted + missing_pct > HIGH_CORRUPTED_PCT,
    }


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        catalog: the tiles found.
        stats: one row per readable, valid tile (keys :data:`STAT_COLUMNS`).
        problems: every problem, catalogue and tile level; such tiles get no stats row.
        warnings: valid tiles that look suspicious (e.g. > 40% kelp, likely mislabelled).
    """

    catalog: Catalog
    stats: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def check_dataset(
    root: str | os.PathLike[str],
    band_order: Sequence[str] = DEFAULT_BAND_ORDER,
    verify_md5: bool = False,
) -> CheckReport:
    """Validate every tile of a dataset and compute its statistics.

    Args:
        root: the dataset folder (Kelp Wanted layout or plain folder).
        band_order: names of the file's bands, first band first.
        verify_md5: also compare files with the metadata CSV's MD5 (reads every byte).

    Returns:
        The report; nothing is raised for bad tiles, they are listed in ``problems``.
    """
    catalog, problems = scan_catalog(root, verify_md5=verify_md5)
    report = CheckReport(catalog, problems=problems)
    bad = {p.tile_id for p in problems if p.tile_id}
    for record in track(catalog.tiles, "checking tiles"):
        try:
            tile = load_tile(record, band_order)
        except TileError as error:
            report.problems.append(Problem(error.path, error.problem, record.tile_id))
            continue
        if record.tile_id in bad:
            continue
        stats = {"split": record.split, **tile_stats(tile)}
        report.stats.append(stats)
        if record.mask is not None and stats["high_kelp_pct"]:
            report.warnings.append(
                Problem(
                    record.mask,
                    f"{stats['kelp_pct']:.1f}% kelp (> {HIGH_KELP_PCT:.0f}%): "
                    "likely mislabelled; check it or leave it out of training",
                    record.tile_id,
                )
            )
    return report


def write_stats(stats: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write per-tile statistics as CSV (atomically), columns :data:`STAT_COLUMNS`."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STAT_COLUMNS)
        writer.writeheader()
        for row in stats:
            writer.writerow(
                {
                    k: "" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)
                    for k, v in row.items()
                }
            )
    return path
