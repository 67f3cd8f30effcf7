"""Which pixels of a train tile become rows of the tree table.

Per tile: every kelp pixel ("kelp"), every non-kelp pixel within ``buffer`` px of kelp
("buffer": the hard negatives at bed edges), and ``n_random`` of the remaining pixels drawn
without replacement ("random"). Each row carries a sampling weight, the inverse of its
inclusion probability: 1 for kelp and buffer rows (all kept), ``n_remaining / n_drawn`` for
random rows, so weighted sums over the table estimate sums over all pixels and predicted
probabilities can be corrected for the sampling. In dense mode every pixel is kept with
weight 1 (kind "dense").

The generator is seeded from ``(seed, tile_id)`` only, so a tile's rows do not depend on the
order in which tiles are processed or on the number of workers.
"""

import hashlib
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage

from kelp.features.config import SamplingConfig

__all__ = ["KINDS", "PixelSample", "sample_pixels", "tile_rng"]

KINDS: Final = ("kelp", "buffer", "random", "dense")


@dataclass(frozen=True)
class PixelSample:
    """Sampled pixels of one tile, ``(N,)`` arrays in kind order then raster order.

    Attributes:
        rows: int32 row of each pixel.
        cols: int32 column of each pixel.
        kind: uint8 index into :data:`KINDS`.
        weight: float32 inverse inclusion probability.
    """

    rows: np.ndarray
    cols: np.ndarray
    kind: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def tile_rng(seed: int, tile_id: str) -> np.random.Generator:
    """A generator that depends only on ``(seed, tile_id)``."""
    digest = hashlib.sha256(f"{seed}:{tile_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def sample_pixels(
    mask: np.ndarray, tile_id: str, config: SamplingConfig, seed: int = 0
) -> PixelSample:
    """Sample the pixels of a train tile.

    Args:
        mask: ``(H, W)`` 0/1 kelp mask.
        tile_id: seeds the random draw together with ``seed``.
        config: buffer width, random count, dense mode.
        seed: the run's seed.

    Returns:
        The sample.
    """
    h, w = mask.shape
    if config.dense:
        rows, cols = np.divmod(np.arange(h * w, dtype=np.int32), np.int32(w))
        return PixelSample(
            rows, cols, np.full(h * w, KINDS.index("dense"), np.uint8), np.ones(h * w, np.float32)
        )
    kelp = mask.astype(bool)
    if kelp.any() and config.buffer > 0:
        buffer = ~kelp & (ndimage.distance_transform_edt(~kelp) <= config.buffer)
    else:
        buffer = np.zeros_like(kelp)
    rest = np.flatnonzero(~kelp & ~buffer)
    n_draw = min(config.n_random, rest.size)
    drawn = np.sort(tile_rng(seed, tile_id).choice(rest, n_draw, replace=False))
    parts = [np.flatnonzero(kelp), np.flatnonzero(buffer), drawn]
    flat = np.concatenate(parts).astype(np.int64)
    kind = np.repeat(np.arange(3, dtype=np.uint8), [len(p) for p in parts])
    weight = np.ones(len(flat), np.float32)
    if n_draw:
        weight[kind == 2] = rest.size / n_draw
    rows, cols = np.divmod(flat, w)
    return PixelSample(rows.astype(np.int32), cols.astype(np.int32), kind, weight)
