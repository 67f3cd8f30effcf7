"""Area-grouped, stratified folds: one ``folds.csv`` that trees, CNN and stacker all read.

Tiles are grouped into areas by their DEM (:mod:`kelp.data.grouping`: shift-, tide- and
void-tolerant matching by default, or the older cosine embedding), then
scikit-learn's ``StratifiedGroupKFold`` assigns whole areas to folds while balancing the
combination of four tile flags (see :mod:`kelp.data.check`): has_kelp, almost_all_water,
qa_ok, high_corrupted. No area is ever on two folds, so a model never validates on a
different date of a place it trained on.

``folds.csv`` columns: ``tile_id, aoi_id, fold`` followed by the four flags, and a
``skipped`` column when the folds stage left bad tiles out (``on_error = "skip"``): those
rows name the tile and why, with no fold. A folds file written by hand (or by another tool)
needs ``tile_id`` and ``fold``, and ``aoi_id`` to check that no area straddles two folds;
:func:`kelp.data.folds_file.read_folds` validates it against the dataset, and
:func:`~kelp.data.folds_file.read_run_folds` also opens the dataset for a later stage,
accepting problems of the skipped tiles only.
"""

import csv
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kelp._progress import track
from kelp.bands import DEFAULT_BAND_ORDER
from kelp.data.catalog import Problem, open_catalog, scan_catalog
from kelp.data.check import tile_stats
from kelp.data.grouping import METHODS, Method, dem_signature, group_areas
from kelp.data.tile import load_tile
from kelp.errors import ConfigError, DatasetError, InputError, TileError

__all__ = [
    "FOLD_FLAGS",
    "FoldAssignment",
    "area_recovery",
    "make_folds",
    "split_areas",
]

FOLD_FLAGS = ("has_kelp", "almost_all_water", "qa_ok", "high_corrupted")
SYNTHETIC_AREAS = "synthetic_areas.csv"


@dataclass(frozen=True)
class FoldAssignment:
    """Which fold holds each train tile.

    Attributes:
        tile_ids: train tile ids.
        aoi_ids: area of each tile (same order).
        folds: ``(N,)`` int fold of each tile, 0..k-1.
        flags: per tile, the stratification flags (empty dicts for user files without them).
        skipped: ``(tile_id, reason)`` of each train tile the folds stage left out.
    """

    tile_ids: tuple[str, ...]
    aoi_ids: tuple[str, ...]
    folds: np.ndarray
    flags: tuple[dict[str, bool], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def k(self) -> int:
        """Number of folds."""
        return int(self.folds.max()) + 1

    def tiles_in(self, fold: int) -> list[str]:
        """Tile ids held out in ``fold``."""
        return [t for t, f in zip(self.tile_ids, self.folds, strict=True) if f == fold]

    def fold_of(self, tile_id: str) -> int:
        """The fold holding ``tile_id`` out."""
        return int(self.folds[self.tile_ids.index(tile_id)])


def make_folds(
    root: str | os.PathLike[str],
    k: int = 5,
    seed: int = 0,
    threshold: float = 0.97,
    max_group_size: int | None = None,
    band_order: Sequence[str] = DEFAULT_BAND_ORDER,
    method: Method = "ncc",
    exclude: dict[str, str] | None = None,
) -> FoldAssignment:
    """Group the train tiles of a dataset into areas and split the areas into k folds.

    Args:
        root: dataset folder.
        k: number of folds, >= 2.
        seed: shuffles the assignment of areas to folds.
        threshold: similarity that links two tiles into one area, in (0, 1): for ``"ncc"``
            the normalised cross-correlation of heights and slopes of the land both tiles
            show at their best alignment, for ``"cosine"`` the cosine similarity of their
            DEM embeddings (see :func:`kelp.data.grouping.group_areas`).
        max_group_size: largest area allowed; ``None`` = ``ceil(n_train / k)``, one fold's
            worth: a larger "area" is a chain of near matches that no split could place.
        band_order: names of the file's bands, first band first.
        method: ``"ncc"`` (shift-, tide- and void-tolerant) or ``"cosine"`` (the older one).
        exclude: ``{tile_id: reason}`` of bad tiles to leave out (recorded as skipped), e.g.
            the problems `kelp data check` found. With it, a tile the catalogue or the DEM
            reader finds bad is skipped too; without it (``None``) any bad tile is an error.

    Returns:
        The assignment.

    Raises:
        ConfigError: k < 2, threshold outside (0, 1), or unknown method.
        InputError: fewer areas than folds.
        DatasetError: the dataset has problems (run ``kelp data check`` to list them).
    """
    if k < 2:
        raise ConfigError(f"k must be >= 2 folds, got {k}")
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    skip = exclude is not None
    skipped = dict(exclude or {})
    catalog, problems = scan_catalog(root) if skip else (open_catalog(root), [])
    for problem in problems:
        if problem.tile_id is None:
            raise DatasetError(problems)  # the listing itself is broken
        skipped.setdefault(problem.tile_id, str(problem))
    records, signatures, flags, bad = [], [], [], []
    for record in track([r for r in catalog.train if r.tile_id not in skipped], "reading DEMs"):
        try:
            tile = load_tile(record, band_order)
        except TileError as error:
            bad.append(Problem(error.path, error.problem, record.tile_id))
            continue
        records.append(record)
        signatures.append(dem_signature(tile.band("dem")))
        stats = tile_stats(tile)
        flags.append({name: bool(stats[name]) for name in FOLD_FLAGS})
    if bad and not skip:
        raise DatasetError(bad)
    skipped.update({p.tile_id: str(p) for p in bad if p.tile_id is not None})
    test_ids = {r.tile_id for r in catalog.test}
    n = len(records)
    if max_group_size is None:
        max_group_size = max(1, -(-n // k))
    areas = group_areas(signatures, threshold, max_group_size, method=method)
    n_areas = int(areas.max()) + 1 if n else 0
    if n_areas < k:
        raise InputError(
            f"{n} train tiles form only {n_areas} area(s), fewer than k={k} folds: "
            "lower k or add tiles"
        )
    strata = np.array(["".join("1" if f[name] else "0" for name in FOLD_FLAGS) for f in flags])
    if np.unique(strata, return_counts=True)[1].max() < k:
        raise InputError(
            f"no combination of the flags {FOLD_FLAGS} is shared by k={k} train tiles, so "
            "the folds cannot be stratified: lower k or add tiles"
        )
    folds = split_areas(areas, strata, k, seed)
    width = len(str(n_areas))
    return FoldAssignment(
        tile_ids=tuple(r.tile_id for r in records),
        aoi_ids=tuple(f"aoi{a:0{width}d}" for a in areas),
        folds=folds,
        flags=tuple(flags),
        skipped=tuple(sorted((t, r) for t, r in skipped.items() if t not in test_ids)),
    )


def split_areas(areas: np.ndarray, strata: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Assign whole areas to k folds, balancing the strata (``StratifiedGroupKFold``).

    Args:
        areas: ``(N,)`` area label of each tile.
        strata: ``(N,)`` stratum of each tile (any hashable labels).
        k: number of folds, >= 2 and at most the number of areas.
        seed: shuffles the assignment.

    Returns:
        ``(N,)`` int64 fold of each tile, 0..k-1; the tiles of an area share one.
    """
    n = len(areas)
    from sklearn.model_selection import StratifiedGroupKFold  # 2 s to import: only when used

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(n, dtype=np.int64)
    with warnings.catch_warnings():
        # Rare flag combinations have fewer members than folds; they spread as best they can.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(n), strata, areas)):
            folds[held_out] = fold
    return folds


def area_recovery(root: str | os.PathLike[str], assignment: FoldAssignment) -> float | None:
    """Adjusted Rand index between the found areas and a synthetic dataset's true areas.

    Returns:
        The index (1.0 = areas recovered exactly), or ``None`` when ``root`` holds no
        ``synthetic_areas.csv`` (real data).
    """
    truth_path = Path(root) / SYNTHETIC_AREAS
    if not truth_path.is_file():
        return None
    with open(truth_path, newline="") as f:
        truth = {row["tile_id"]: row["aoi_id"] for row in csv.DictReader(f)}
    found = dict(zip(assignment.tile_ids, assignment.aoi_ids, strict=True))
    common = sorted(found.keys() & truth.keys())
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score([truth[t] for t in common], [found[t] for t in common]))
