"""Find the tiles of a dataset: the Kelp Wanted layout (with or without its metadata CSV) or
a plain folder of ``<tile_id>_satellite.tif`` / ``<tile_id>_kelp.tif`` files.

Kelp Wanted layout::

    root/train_satellite/<id>_satellite.tif
    root/train_kelp/<id>_kelp.tif
    root/test_satellite/<id>_satellite.tif
    root/<any name>.csv      columns tile_id, filename, md5_hash, filesize_bytes, type, in_train

Plain folder: every ``<id>_satellite.tif`` in ``root``; a tile with a ``<id>_kelp.tif``
beside it is a train tile, one without is a test tile.

:func:`scan_catalog` collects every problem it finds (so ``kelp data check`` can list them
all); :func:`open_catalog` raises one :class:`DatasetError` that lists them.
"""

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kelp.errors import DatasetError

__all__ = [
    "METADATA_COLUMNS",
    "Catalog",
    "Problem",
    "TileRecord",
    "file_md5",
    "open_catalog",
    "scan_catalog",
]

Split = Literal["train", "test"]

METADATA_COLUMNS = ("tile_id", "filename", "md5_hash", "filesize_bytes", "type", "in_train")
_IMAGE_SUFFIX = "_satellite.tif"
_MASK_SUFFIX = "_kelp.tif"
_SPLIT_DIRS: dict[Split, tuple[str, str | None]] = {
    "train": ("train_satellite", "train_kelp"),
    "test": ("test_satellite", None),
}


@dataclass(frozen=True)
class TileRecord:
    """Where one tile's files are.

    Attributes:
        tile_id: e.g. ``"AA498489"``.
        image: path of ``<tile_id>_satellite.tif``.
        mask: path of ``<tile_id>_kelp.tif``; ``None`` for test tiles.
        split: ``"train"`` (has a mask) or ``"test"``.
    """

    tile_id: str
    image: Path
    mask: Path | None
    split: Split


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, named by file (and tile when known)."""

    path: Path
    message: str
    tile_id: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Catalog:
    """The tiles of a dataset, sorted by tile id.

    Attributes:
        root: the dataset folder.
        layout: ``"kelp-wanted"`` or ``"folder"``.
        tiles: every tile found.
        metadata: the metadata CSV used, if any.
    """

    root: Path
    layout: Literal["kelp-wanted", "folder"]
    tiles: tuple[TileRecord, ...]
    metadata: Path | None = None

    @property
    def train(self) -> tuple[TileRecord, ...]:
        """Tiles with a kelp mask."""
        return tuple(t for t in self.tiles if t.split == "train")

    @property
    def test(self) -> tuple[TileRecord, ...]:
        """Tiles without a kelp mask."""
        return tuple(t for t in self.tiles if t.split == "test")


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_catalog(root: str | os.PathLike[str]) -> Catalog:
    """Find the tiles of a dataset, or fail listing every problem.

    Raises:
        DatasetError: missing or empty folder, metadata naming missing files, duplicate
            tile ids, a train tile without its mask, ...
    """
    catalog, problems = scan_catalog(root)
    if problems:
        raise DatasetError(problems)
    return catalog


def scan_catalog(
    root: str | os.PathLike[str], verify_md5: bool = False
) -> tuple[Catalog, list[Problem]]:
    """Find the tiles of a dataset and every problem with its file listing.

    Tiles with a problem are left out of the catalogue; the rest stay usable.

    Args:
        root: the dataset folder.
        verify_md5: also compare each file's MD5 with the metadata CSV (reads every file).

    Returns:
        ``(catalog, problems)``.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "folder not found"
        problem = Problem(root, f"{what}: give the folder that holds the tiles")
        return Catalog(root, "folder", ()), [problem]
    if any((root / image_dir).is_dir() for image_dir, _ in _SPLIT_DIRS.values()):
        metadata = _find_metadata(root)
        if metadata is not None:
            return _from_metadata(root, metadata, verify_md5)
        return _from_folders(root)
    return _from_flat(root)


def _find_metadata(root: Path) -> Path | None:
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if set(METADATA_COLUMNS) <= {h.strip() for h in header}:
            return path
    return None


def _by_tile_id(folder: Path, suffix: str) -> dict[str, Path]:
    """``{tile_id: path}`` of the ``<tile_id><suffix>`` files in ``folder``, sorted by name."""
    return {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*{suffix}"))}


def _orphan_masks(masks: dict[str, Path], images: Collection[str]) -> list[Problem]:
    """A problem for each mask whose tile has no image, by tile id."""
    return [
        Problem(masks[t], "kelp mask without an image", t) for t in sorted(masks.keys() - images)
    ]


def _finish(
    root: Path,
    layout: Literal["kelp-wanted", "folder"],
    records: list[TileRecord],
    problems: list[Problem],
    metadata: Path | None = None,
) -> tuple[Catalog, list[Problem]]:
    counts = Counter(r.tile_id for r in records)
    for tile_id, n in sorted(counts.items()):
        if n > 1:
            paths = ", ".join(str(r.image) for r in records if r.tile_id == tile_id)
            problems.append(
                Problem(root, f"duplicate tile id {tile_id!r} ({n} images: {paths})", tile_id)
            )
    unique = sorted((r for r in records if counts[r.tile_id] == 1), key=lambda r: r.tile_id)
    if not records and not problems:
        problems.append(
            Problem(
                root,
                "no tiles found: expected <tile_id>_satellite.tif files (plain folder) or "
                "train_satellite/, train_kelp/, test_satellite/ (Kelp Wanted layout)",
            )
        )
    return Catalog(root, layout, tuple(unique), metadata), problems


def _from_folders(root: Path) -> tuple[Catalog, list[Problem]]:
    records: list[TileRecord] = []
    problems: list[Problem] = []
    for split, (image_dir, mask_dir) in _SPLIT_DIRS.items():
        images = _by_tile_id(root / image_dir, _IMAGE_SUFFIX)
        masks = {}
        if mask_dir is not None:
            masks = _by_tile_id(root / mask_dir, _MASK_SUFFIX)
            problems.extend(_orphan_masks(masks, images))
        for tile_id, image in images.items():
            mask = masks.get(tile_id)
            if mask_dir is not None and mask is None:
                expected = root / mask_dir / f"{tile_id}{_MASK_SUFFIX}"
                problems.append(Problem(expected, "train image has no kelp mask", tile_id))
                continue
            records.append(TileRecord(tile_id, image, mask, split))
    return _finish(root, "kelp-wanted", records, problems)


def _from_flat(root: Path) -> tuple[Catalog, list[Problem]]:
    images = _by_tile_id(root, _IMAGE_SUFFIX)
    masks = _by_tile_id(root, _MASK_SUFFIX)
    problems = _orphan_masks(masks, images)
    records = [
        TileRecord(t, p, masks.get(t), "train" if t in masks else "test") for t, p in images.items()
    ]
    return _finish(root, "folder", records, problems)


def _from_metadata(root: Path, metadata: Path, verify_md5: bool) -> tuple[Catalog, list[Problem]]:
    problems: list[Problem] = []
    images: dict[str, list[tuple[Path, Split]]] = {}
    masks: dict[str, Path] = {}
    with open(metadata, newline="") as f:
        rows = list(csv.DictReader(f))
    for line, row in enumerate(rows, start=2):
        tile_id = (row.get("tile_id") or "").strip()
        kind = (row.get("type") or "").strip()
        in_train = (row.get("in_train") or "").strip().lower()
        if not tile_id or kind not in ("satellite", "kelp") or in_train not in ("true", "false"):
            problems.append(
                Problem(
                    metadata,
                    f"line {line}: need a tile_id, type satellite|kelp and in_train "
                    f"True|False, got {dict(row)}",
                    tile_id or None,
                )
            )
            continue
        split: Split = "train" if in_train == "true" else "test"
        folder = {
            ("satellite", "train"): "train_satellite",
            ("satellite", "test"): "test_satellite",
        }.get((kind, split), "train_kelp")
        path = root / folder / row["filename"].strip()
        if not path.is_file():
            problems.append(
                Problem(path, f"listed in {metadata.name} (line {line}) but not found", tile_id)
            )
            continue
        problems.extend(_check_listing(path, row, line, metadata.name, verify_md5, tile_id))
        if kind == "satellite":
            images.setdefault(tile_id, []).append((path, split))
        elif tile_id in masks:
            problems.append(Problem(path, f"duplicate kelp mask for tile id {tile_id!r}", tile_id))
        else:
            masks[tile_id] = path
    records: list[TileRecord] = []
    for tile_id, entries in images.items():
        for path, split in entries:
            mask = masks.get(tile_id) if split == "train" else None
            if split == "train" and mask is None:
                problems.append(Problem(path, "train image has no kelp mask", tile_id))
                continue
            records.append(TileRecord(tile_id, path, mask, split))
    problems.extend(_orphan_masks(masks, images))
    return _finish(root, "kelp-wanted", records, problems, metadata)


def _check_listing(
    path: Path, row: dict[str, str], line: int, csv_name: str, verify_md5: bool, tile_id: str
) -> list[Problem]:
    problems = []
    size = (row.get("filesize_bytes") or "").strip()
    if size.isdigit() and int(size) != path.stat().st_size:
        problems.append(
            Problem(
                path,
                f"size {path.stat().st_size} bytes differs from {size} in {csv_name} "
                f"(line {line}): the file is truncated or was replaced",
                tile_id,
            )
        )
    expected = (row.get("md5_hash") or "").strip()
    if verify_md5 and expected and file_md5(path) != expected:
        problems.append(
            Problem(path, f"MD5 differs from {csv_name} (line {line}): re-download it", tile_id)
        )
    return problems
