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

__all__ = ["FeatureTable", "check_feature_names", "load_table"]


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
