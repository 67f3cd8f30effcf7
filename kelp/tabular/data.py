"""The feature table as arrays for the tree libraries, read with polars (no pandas).

The table (``kelp build-features``) has key columns, then one float32 column per channel in
the order ``manifest["feature_names"]``. A model remembers that order; everything that feeds
a model goes through :func:`check_feature_names`, which refuses a different list or order
with a message naming the first difference, instead of silently reordering columns.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kelp.errors import StaleInputError
from kelp.features.build import KEY_COLUMNS
from kelp.features.manifest import read_manifest

__all__ = [
    "FeatureTable",
    "RowSample",
    "check_feature_names",
    "load_table",
    "positive_tiles",
    "read_rows",
]


def check_feature_names(expected: Sequence[str], found: Sequence[str], context: str) -> None:
    """Refuse features whose names or order differ from ``expected``.

    Args:
        expected: the names a model was trained on, in order.
        found: the names offered, in order.
        context: what is being compared, e.g. ``"the table in runs/x/features vs the
            lightgbm model of fold 0"``; starts the message.

    Raises:
        StaleInputError: naming missing and extra names, or the first position where
            the order differs, and what to do.
    """
    expected, found = list(expected), list(found)
    if expected == found:
        return
    missing = [n for n in expected if n not in found]
    extra = [n for n in found if n not in expected]
    if missing or extra:
        detail = f"missing {missing[:8]}, unexpected {extra[:8]}"
    else:
        i = next(i for i, (a, b) in enumerate(zip(expected, found, strict=True)) if a != b)
        detail = f"same names in another order: {found[i]!r} at position {i}, not {expected[i]!r}"
    raise StaleInputError(
        f"{context}: features differ ({len(found)} offered, {len(expected)} expected; "
        f"{detail}). The features were built with a different feature config: rebuild them "
        "with the model's config (`kelp build-features --config ...`) or retrain "
        "(`kelp train-trees`)."
    )


@dataclass(frozen=True)
class FeatureTable:
    """The rows of the feature table.

    Attributes:
        features: ``(N, F) float32``, C-contiguous, NaN = missing.
        label: ``(N,) uint8`` 0/1 kelp.
        weight: ``(N,) float32`` inverse sampling probability.
        tile_index: ``(N,) int32`` index into ``tiles`` of each row's tile.
        tiles: tile ids, sorted.
        feature_names: the F column names.
    """

    features: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    tile_index: np.ndarray
    tiles: tuple[str, ...]
    feature_names: tuple[str, ...]

    def rows_of(self, tile_ids: Sequence[str]) -> np.ndarray:
        """``(N,) bool``: rows belonging to any of ``tile_ids`` (unknown ids match nothing)."""
        wanted = set(tile_ids)
        lookup = np.array([t in wanted for t in self.tiles], dtype=bool)
        return lookup[self.tile_index] if len(self.tiles) else np.zeros(0, bool)

    def positive_tiles(self) -> set[str]:
        """Tiles with at least one kelp row."""
        hits = np.unique(self.tile_index[self.label == 1])
        return {self.tiles[i] for i in hits}


def load_table(
    features_dir: str | os.PathLike[str],
    manifest: dict[str, Any] | None = None,
    expected: Sequence[str] | None = None,
) -> FeatureTable:
    """Read every row of ``FEATURES/table/*.parquet``.

    Args:
        features_dir: the output folder of ``kelp build-features``.
        manifest: its manifest, when already read.
        expected: feature names a model expects, in order (e.g. ``feature_names_in_``);
            a table with other names or another order is refused.

    Returns:
        The table.

    Raises:
        FileNotFoundError: no manifest or no table files (says to run
            ``kelp build-features``).
        StaleInputError: the Parquet columns disagree with the manifest, or the
            table's features differ from ``expected``.
    """
    features_dir = Path(features_dir)
    manifest = manifest if manifest is not None else read_manifest(features_dir)
    names = list(manifest["feature_names"])
    files = sorted((features_dir / "table").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(
            f"{features_dir / 'table'} holds no Parquet files: run `kelp build-features`"
        )
    lazy = pl.scan_parquet(files)
    columns = lazy.collect_schema().names()
    check_feature_names(
        names, columns[len(KEY_COLUMNS) :], f"the table in {features_dir} vs its manifest"
    )
    if expected is not None:
        check_feature_names(expected, names, f"the table in {features_dir} vs the model")
    frame = lazy.select("tile_id", "label", "weight", *names).collect()
    features = np.empty((frame.height, len(names)), np.float32)
    for j, name in enumerate(names):
        features[:, j] = frame.get_column(name).to_numpy()
    tile_ids = frame.get_column("tile_id")
    return FeatureTable(
        features=features,
        label=frame.get_column("label").to_numpy().astype(np.uint8),
        weight=frame.get_column("weight").to_numpy().astype(np.float32),
        tile_index=(tile_ids.rank("dense").to_numpy() - 1).astype(np.int32),
        tiles=tuple(tile_ids.unique().sort().to_list()),
        feature_names=tuple(names),
    )


@dataclass(frozen=True)
class RowSample:
    """How many rows a set of tiles holds and how many :func:`read_rows` kept.

    Attributes:
        available: rows of the tiles in the table.
        kept: rows returned.
        probability: ``kept / available`` (1.0 when nothing was dropped); each kept row's
            weight was divided by it.
    """

    available: int
    kept: int
    probability: float

    def as_dict(self) -> dict[str, Any]:
        return {"available": self.available, "kept": self.kept, "probability": self.probability}


def read_rows(
    features_dir: str | os.PathLike[str],
    manifest: dict[str, Any],
    tile_ids: Sequence[str],
    *,
    max_rows: int | None = None,
    seed: Sequence[int] = (0,),
) -> tuple[FeatureTable, RowSample]:
    """The rows of ``tile_ids`` only, read from their own Parquet files, at most ``max_rows``.

    Rows come in tile-id order, each tile's in file order: the rows, and their order, of
    :func:`load_table` restricted to these tiles. With more than ``max_rows`` rows, exactly
    ``max_rows`` of them are drawn uniformly without replacement
    (``numpy.random.default_rng(seed)``), kept in that order, and their weights divided by
    ``max_rows / rows``. Memory holds the rows returned plus one tile's file, whatever the
    size of the table.

    Args:
        features_dir: the output folder of ``kelp build-features``.
        manifest: its manifest (``tiles`` gives each tile's row count).
        tile_ids: the tiles; those not in the table are left out.
        max_rows: most rows to return; ``None`` = all.
        seed: seeds the draw (e.g. ``(config seed, fold, which set)``).

    Raises:
        StaleInputError: a tile's file is missing, lacks a channel of the manifest or holds
            another number of rows than the manifest says.
    """
    features_dir = Path(features_dir)
    names = list(manifest["feature_names"])
    listed = manifest["tiles"]
    tiles = sorted(t for t in set(tile_ids) if t in listed)
    counts = np.array([listed[t]["rows"] for t in tiles], np.int64)
    available = int(counts.sum())
    keep = None
    if max_rows is not None and available > max_rows:
        keep = np.sort(np.random.default_rng(list(seed)).choice(available, max_rows, replace=False))
    size = available if keep is None else len(keep)
    features = np.empty((size, len(names)), np.float32)
    label = np.empty(size, np.uint8)
    weight = np.empty(size, np.float32)
    tile_index = np.empty(size, np.int32)
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = 0
    for i, tile in enumerate(tiles):
        local = None
        if keep is not None:
            lo, hi = np.searchsorted(keep, starts[i : i + 2])
            local = keep[lo:hi] - starts[i]
            if not len(local):
                continue
        if counts[i] == 0:
            continue
        frame = _tile_frame(features_dir, tile, names, int(counts[i]))
        if local is not None:
            frame = frame[local]
        n = frame.height
        for j, name in enumerate(names):
            features[out : out + n, j] = frame.get_column(name).to_numpy()
        label[out : out + n] = frame.get_column("label").to_numpy()
        weight[out : out + n] = frame.get_column("weight").to_numpy()
        tile_index[out : out + n] = i
        out += n
    probability = 1.0 if keep is None else size / available
    if keep is not None:
        weight /= np.float32(probability)
    table = FeatureTable(features, label, weight, tile_index, tuple(tiles), tuple(names))
    return table, RowSample(available, size, probability)


def _tile_frame(features_dir: Path, tile: str, names: list[str], rows: int) -> pl.DataFrame:
    path = features_dir / "table" / f"{tile}.parquet"
    rebuild = "rebuild the table with `kelp build-features` (it redoes only what is stale)"
    try:
        frame = pl.read_parquet(path, columns=["label", "weight", *names])
    except FileNotFoundError:
        raise StaleInputError(f"{path}: missing from the feature table; {rebuild}") from None
    except pl.exceptions.ColumnNotFoundError as error:
        raise StaleInputError(
            f"{path}: lacks a channel of the manifest ({error}); {rebuild}"
        ) from None
    if frame.height != rows:
        raise StaleInputError(f"{path}: {frame.height} rows, the manifest says {rows}; {rebuild}")
    return frame


def positive_tiles(features_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> set[str]:
    """Tiles of the table with at least one kelp row (only the label column is read)."""
    files = [Path(features_dir) / "table" / f"{t}.parquet" for t in sorted(manifest["tiles"])]
    files = [f for f in files if f.is_file()]
    if not files:
        return set()
    found = (
        pl.scan_parquet(files)
        .select("tile_id", "label")
        .filter(pl.col("label") == 1)
        .select(pl.col("tile_id").unique())
        .collect()
    )
    return set(found.get_column("tile_id").to_list())
