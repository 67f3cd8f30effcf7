"""``folds.csv`` on disk: write it, read and validate it, and open it with its dataset.

Columns: ``tile_id, aoi_id, fold`` followed by the four stratification flags
(:data:`~kelp.data.folds.FOLD_FLAGS`), and ``skipped`` when the folds stage left bad tiles
out: those rows name the tile and why, with no fold.
"""

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from kelp._files import atomic_path
from kelp.data.catalog import Catalog, scan_catalog
from kelp.data.folds import FOLD_FLAGS, FoldAssignment
from kelp.errors import DatasetError, InputError

__all__ = ["check_folds", "read_folds", "read_run_folds", "write_folds"]


def write_folds(assignment: FoldAssignment, path: str | os.PathLike[str]) -> Path:
    """Write ``folds.csv`` atomically (columns ``tile_id, aoi_id, fold`` + flags, and
    ``skipped`` with a row per skipped tile when there are any)."""
    path = Path(path)
    flags = list(FOLD_FLAGS) if assignment.flags else []
    skipped = ["skipped"] if assignment.skipped else []
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tile_id", "aoi_id", "fold", *flags, *skipped])
        for i, tile_id in enumerate(assignment.tile_ids):
            row: list[Any] = [tile_id, assignment.aoi_ids[i], int(assignment.folds[i])]
            if assignment.flags:
                row += [int(assignment.flags[i][name]) for name in FOLD_FLAGS]
            writer.writerow(row + [""] * len(skipped))
        for tile_id, reason in assignment.skipped:
            writer.writerow([tile_id, "", "", *([""] * len(flags)), reason])
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
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable CSV folds file ({error})") from None
    missing_cols = [c for c in ("tile_id", "fold") if c not in columns]
    if missing_cols:
        raise InputError(f"{path}: missing column(s) {missing_cols}; found {columns}")
    problems: list[str] = []
    seen: dict[str, int] = {}
    tile_ids, aoi_ids, folds, flags, skipped = [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        if None in row.values() or None in row:
            problems.append(f"line {line}: {len(columns)} columns expected, found another count")
            continue
        tile_id = row["tile_id"].strip()
        if (row.get("skipped") or "").strip():
            skipped.append((tile_id, row["skipped"].strip()))
            continue
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
    assignment = FoldAssignment(
        tuple(tile_ids), tuple(aoi_ids), np.array(folds), tuple(flags), tuple(skipped)
    )
    if catalog is not None:
        problems += _catalog_problems(assignment, catalog)
    _raise(path, problems)
    return assignment


def check_folds(assignment: FoldAssignment, catalog: Catalog, path: str | os.PathLike[str]) -> None:
    """Check a folds file already read against the dataset: every train tile has a fold or
    was skipped, and no tile is unknown.

    Raises:
        InputError: listing every mismatch, naming the file.
    """
    _raise(Path(path), _catalog_problems(assignment, catalog))


def _catalog_problems(assignment: FoldAssignment, catalog: Catalog) -> list[str]:
    train = {r.tile_id for r in catalog.train}
    tile_ids = set(assignment.tile_ids)
    missing = sorted(train - tile_ids - {t for t, _ in assignment.skipped})
    unknown = sorted(tile_ids - train)
    problems = []
    if missing:
        problems.append(f"{len(missing)} train tile(s) without a fold, e.g. {missing[:5]}")
    if unknown:
        problems.append(
            f"{len(unknown)} tile(s) not among the dataset's train tiles, e.g. {unknown[:5]}"
        )
    return problems


def _raise(path: Path, problems: list[str]) -> None:
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"{path}: {len(problems)} problem(s):\n{listed}")


def read_run_folds(
    path: str | os.PathLike[str], data: str | os.PathLike[str]
) -> tuple[FoldAssignment, Catalog]:
    """The folds file and the dataset it splits, checked against each other, for a stage.

    A tile the folds stage skipped may have any problem; a problem of any other tile of the
    listing is an error.

    Raises:
        InputError: a bad folds file, or one that does not match the dataset.
        DatasetError: the dataset's problems, other than those of skipped tiles.
    """
    assignment = read_folds(path)
    catalog, problems = scan_catalog(data)
    skipped = {t for t, _ in assignment.skipped}
    serious = [p for p in problems if p.tile_id is None or p.tile_id not in skipped]
    if serious:
        raise DatasetError(serious)
    check_folds(assignment, catalog, path)
    return assignment, catalog
