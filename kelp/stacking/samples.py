"""What the stacker reads of each train tile once: sampled out-of-fold pixels and its truth.

The meta-models are fit on a weighted sample of each tile's pixels (the same sampling as the
feature table, :func:`kelp.features.sampling.sample_pixels`); scoring and post-processing use
every pixel, against the true mask and the DEM land mask kept bit-packed in memory.
"""

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kelp._progress import track
from kelp.data.catalog import TileRecord
from kelp.data.tile import Tile, load_tile
from kelp.features.channels import land_mask
from kelp.features.sampling import sample_pixels
from kelp.stacking.config import StackConfig
from kelp.stacking.inputs import BaseMaps
from kelp.stacking.meta import create_meta, meta_features

__all__ = ["Rows", "Truth", "sample_rows"]


@dataclass
class Rows:
    """Sampled out-of-fold pixels of one tile."""

    fold: int
    plain: np.ndarray  # (N, M) logits
    spatial: np.ndarray | None  # (N, F) with neighbourhood aggregates and land
    label: np.ndarray
    weight: np.ndarray
    sampled: int = 0  # pixels sampled before ``max_rows`` kept some (0: not recorded)


@dataclass(frozen=True)
class Truth:
    """A tile's true mask and land mask, bit-packed: read from disk once per stage."""

    shape: tuple[int, int]
    kelp: np.ndarray
    land: np.ndarray

    @classmethod
    def of(cls, tile: Tile) -> "Truth":
        kelp = tile.mask if tile.mask is not None else np.zeros(tile.shape, np.uint8)
        return cls(tile.shape, np.packbits(kelp.astype(bool)), np.packbits(land_mask(tile)))

    def truth(self) -> np.ndarray:
        """``(H, W) uint8`` 0/1 kelp."""
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.kelp, count=n).reshape(self.shape)

    def land_mask(self) -> np.ndarray:
        """``(H, W) bool``."""
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.land, count=n).reshape(self.shape).astype(bool)


def sample_rows(
    tile_ids: Sequence[str],
    records: Mapping[str, TileRecord],
    base: BaseMaps,
    band_order: tuple[str, ...],
    config: StackConfig,
) -> tuple[dict[str, Rows], dict[str, Truth]]:
    """Each tile's sampled rows (with spatial features if a meta-model needs them) and truth."""
    spatial = any(create_meta(m).spatial for m in config.compare)  # meta is among them
    per_tile = -(-config.max_rows // max(1, len(tile_ids))) if config.max_rows else None
    rows: dict[str, Rows] = {}
    truths: dict[str, Truth] = {}
    for tile_id in track(tile_ids, "sampling out-of-fold pixels"):
        truths[tile_id] = known = Truth.of(load_tile(records[tile_id], band_order))
        mask = known.truth()
        logits = base.logits(tile_id)
        sample = sample_pixels(mask, tile_id, config.sampling, config.seed)
        r, c, weight = sample.rows, sample.cols, sample.weight
        if per_tile is not None and len(r) > per_tile:
            keep = _keep(len(r), per_tile, config.seed, tile_id)
            r, c, weight = r[keep], c[keep], weight[keep] * np.float32(len(sample) / per_tile)
        rows[tile_id] = Rows(
            fold=base.fold_of[tile_id],
            plain=logits[:, r, c].T.copy(),
            spatial=meta_features(logits, known.land_mask(), True)[:, r, c].T.copy()
            if spatial
            else None,
            label=mask[r, c],
            weight=weight,
            sampled=len(sample),
        )
    return rows, truths


def _keep(n: int, k: int, seed: int, tile_id: str) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` rows, drawn from the seed and the tile alone (not
    from the order tiles are read in)."""
    rng = np.random.default_rng([seed, zlib.crc32(tile_id.encode())])
    return np.sort(rng.choice(n, size=k, replace=False))
