"""Area-grouped, stratified folds: one ``folds.csv`` that trees, CNN and stacker all read.

Tiles are grouped into areas by their DEM (:mod:`kelp.data.grouping`: shift-, tide- and
void-tolerant matching by default, or the older cosine embedding), then
scikit-learn's ``StratifiedGroupKFold`` assigns whole areas to folds while balancing the
combination of four tile flags (see :mod:`kelp.data.check`): has_kelp, almost_all_water,
qa_ok, high_corrupted. No area is ever on two folds, so a model never validates on a
different date of a place it trained on.

``folds.csv`` columns: ``tile_id, aoi_id, fold`` followed by the four flags. A folds file
written by hand (or by another tool) needs ``tile_id`` and ``fold``, and ``aoi_id`` to
check that no area straddles two folds; :func:`read_folds` validates it against the
dataset.
"""

import csv
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import StratifiedGroupKFold

from kelp._files import atomic_path
from kelp._progress import track
from kelp.bands import DEFAULT_BAND_ORDER
from kelp.data.catalog import Catalog, Problem, open_catalog
from kelp.data.check import tile_stats
from kelp.data.grouping import METHODS, Method, dem_signature, group_areas
from kelp.data.tile import load_tile
from kelp.errors import ConfigError, DatasetError, InputError, TileError

__all__ = [
    "FOLD_FLAGS",
    "FoldAssignment",
    "area_recovery",
    "make_folds",
    "read_folds",
    "split_areas",
    "write_folds",
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
    """

    tile_ids: tuple[str, ...]
    aoi_ids: tuple[str, ...]
    folds: np.ndarray
    flags: tuple[dict[str, bool], ...] = ()

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
    catalog = open_catalog(root)
    records = catalog.train
    signatures, flags, problems = [], [], []
    for record in track(records, "reading DEMs"):
        try:
            tile = load_tile(record, band_order)
        except TileError as error:
            problems.append(Problem(error.path, error.problem, record.tile_id))
            continue
        signatures.append(dem_signature(tile.band("dem")))
        stats = tile_stats(tile)
        flags.append({name: bool(stats[name]) for name in FOLD_FLAGS})
    if problems:
        raise DatasetError(problems)
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
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(n, dtype=np.int64)
    with warnings.catch_warnings():
        # Rare flag combinations have fewer members than folds; they spread as best they can.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(n), strata, areas)):
            folds[held_out] = fold
    return folds


def write_folds(assignment: FoldAssignment, path: str | os.PathLike[str]) -> Path:
    """Write ``folds.csv`` atomically (columns ``tile_id, aoi_id, fold`` + flags)."""
    path = Path(path)
    columns = ["tile_id", "aoi_id", "fold", *(FOLD_FLAGS if assignment.flags else ())]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, tile_id in enumerate(assignment.tile_ids):
            row: list[Any] = [tile_id, assignment.aoi_ids[i], int(assignment.folds[i])]
            if assignment.flags:
                row += [int(assignment.flags[i][name]) for name in FOLD_FLAGS]
            writer.writerow(row)
    return path


def read_folds(path: str | os.PathLike[str], catalog: Catalog | None = None) -> FoldAssignment:
    """Read and validate a folds CSV.

    Checks: columns ``tile_id`` and ``fold`` present; folds are integers numbered 0..k-1
    with k >= 2; no tile twice; no area on two folds; with ``catalog``, every train tile
    exactly once and no unknown tile.

    Raises:
        InputError: listing every problem, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: folds file not found; write one with `kelp data folds`")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    missing_cols = [c for c in ("tile_id", "fold") if c not in columns]
    if missing_cols:
        raise InputError(f"{path}: missing column(s) {missing_cols}; found {columns}")
    problems: list[str] = []
    seen: dict[str, int] = {}
    tile_ids, aoi_ids, folds, flags = [], [], [], []
    for line, row in enumerate(rows, start=2):
        tile_id = row["tile_id"].strip()
        try:
            fold = int(row["fold"])
        except ValueError:
            problems.append(f"line {line}: fold {row['fold']!r} of {tile_id} is not an integer")
            continue
        if tile_id in seen:
            problems.append(f"line {line}: tile {tile_id} repeated (first on line {seen[tile_id]})")
            continue
        seen[tile_id] = line
        tile_ids.append(tile_id)
        aoi_ids.append((row.get("aoi_id") or tile_id).strip())
        folds.append(fold)
        if all(name in columns for name in FOLD_FLAGS):
            flags.append({name: row[name].strip() in ("1", "True", "true") for name in FOLD_FLAGS})
    present = sorted(set(folds))
    if len(present) < 2:
        problems.append(f"needs at least 2 folds, found {present}")
    elif present != list(range(len(present))):
        problems.append(f"folds must be numbered 0..k-1, found {present}")
    area_folds: dict[str, set[int]] = defaultdict(set)
    for aoi, fold in zip(aoi_ids, folds, strict=True):
        area_folds[aoi].add(fold)
    for aoi, on in sorted(area_folds.items()):
        if len(on) > 1:
            problems.append(f"area {aoi} is on folds {sorted(on)}: an area must sit in one fold")
    if catalog is not None:
        train = {r.tile_id for r in catalog.train}
        missing = sorted(train - set(tile_ids))
        unknown = sorted(set(tile_ids) - train)
        if missing:
            problems.append(f"{len(missing)} train tile(s) without a fold, e.g. {missing[:5]}")
        if unknown:
            problems.append(
                f"{len(unknown)} tile(s) not among the dataset's train tiles, e.g. {unknown[:5]}"
            )
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"{path}: {len(problems)} problem(s):\n{listed}")
    return FoldAssignment(tuple(tile_ids), tuple(aoi_ids), np.array(folds), tuple(flags))


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
    return float(adjusted_rand_score([truth[t] for t in common], [found[t] for t in common]))
