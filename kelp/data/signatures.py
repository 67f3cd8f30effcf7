"""What area grouping keeps of a tile's DEM: its signature and the older cosine embedding.

:func:`dem_signature` reduces a DEM band to the maps that :func:`kelp.data.grouping.group_areas`
compares (full-resolution heights, a band-passed candidate-search map, an alignment map);
:func:`dem_embedding` is the 32x32 vector of the ``"cosine"`` method. See
:mod:`kelp.data.grouping` for how they are matched.
"""

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage

from kelp.bands import MISSING

__all__ = ["MID_SIDE", "VOID", "DemSignature", "dem_embedding", "dem_signature"]

VOID: Final = -1  # void pixels in DemSignature.heights
_MIN_SIDE: Final = 8  # px: smaller tiles cannot be matched
_MIN_LAND: Final = 20  # px: tiles with less land have no shape (open sea)
_SEARCH_SIDE: Final = 44  # px of the candidate-search map
MID_SIDE: Final = 64  # px of the alignment map


def dem_embedding(dem: np.ndarray, grid: int = 32, smooth: float = 1.0) -> np.ndarray:
    """Reduce a DEM band to a ``(grid * grid,)`` float32 vector (the ``"cosine"`` method).

    Args:
        dem: ``(H, W)`` integer DEM in metres; ``-32768`` = missing.
        grid: blocks per side.
        smooth: Gaussian sigma, in blocks, applied to the grid (0 = none).

    Returns:
        ``(grid * grid,)`` float32: ``sqrt(max(block mean, 0))``, smoothed; missing blocks
        take the nearest valid block's value; all zeros when no pixel is valid.
    """
    valid = dem != MISSING
    values = np.where(valid, dem, 0).astype(np.float64)
    rows = np.linspace(0, dem.shape[0], grid + 1).astype(int)[:-1]
    cols = np.linspace(0, dem.shape[1], grid + 1).astype(int)[:-1]

    def block_sum(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(a, rows, axis=0), cols, axis=1)

    counts = block_sum(valid.astype(np.float64))
    if not counts.any():
        return np.zeros(grid * grid, np.float32)
    means = block_sum(values) / np.maximum(counts, 1)
    empty = counts == 0
    if empty.any():
        _, (ri, ci) = ndimage.distance_transform_edt(empty, return_indices=True)
        means = means[ri, ci]
    embedding = np.sqrt(np.maximum(means, 0))
    if smooth > 0:
        embedding = ndimage.gaussian_filter(embedding, smooth, mode="nearest")
    return embedding.astype(np.float32).ravel()


@dataclass(frozen=True, eq=False)
class DemSignature:
    """What grouping keeps of one tile's DEM (see :func:`dem_signature`).

    Attributes:
        heights: ``(H, W)`` int16 metres: > 0 land, 0 sea (and bathymetry), -1 void.
        search: ``(S, S')`` float32 band-passed square-rooted block means, voids filled
            (candidate search, ~44 px a side).
        mid: ``(M, M')`` float32 block-mean heights in metres, 0 where not valid (alignment,
            ~64 px a side).
        mid_valid: ``(M, M')`` bool, blocks at least half valid.
        embedding: ``(1024,)`` float32 :func:`dem_embedding` (the ``"cosine"`` method).
        land: land pixels (> 0 m, not void).
    """

    heights: np.ndarray
    search: np.ndarray
    mid: np.ndarray
    mid_valid: np.ndarray
    embedding: np.ndarray
    land: int

    @property
    def has_shape(self) -> bool:
        """Enough land to match (fewer than 20 pixels = open sea, its own area)."""
        return self.land >= _MIN_LAND


def dem_signature(dem: np.ndarray) -> DemSignature:
    """Reduce a tile's DEM band to what :func:`kelp.data.grouping.group_areas` compares.

    Args:
        dem: ``(H, W)`` integer DEM in metres, ``-32768`` = void, ``H, W >= 8``.

    Returns:
        The signature (about 2 bytes per pixel: the full-resolution heights are kept for the
        verification).

    Raises:
        ValueError: ``dem`` is not 2-D or smaller than 8 px a side.
    """
    dem = np.asarray(dem)
    if dem.ndim != 2 or min(dem.shape) < _MIN_SIDE:
        raise ValueError(f"a DEM must be 2-D and at least {_MIN_SIDE} px a side, got {dem.shape}")
    valid = dem != MISSING
    heights = np.where(valid, np.clip(dem, 0, 32767), VOID).astype(np.int16)
    metres = np.where(valid, heights, 0).astype(np.float64)
    side = min(dem.shape)
    search, search_ok = _block_mean(np.sqrt(metres), valid, max(1, round(side / _SEARCH_SIDE)))
    if search_ok.any() and not search_ok.all():
        _, (ri, ci) = ndimage.distance_transform_edt(~search_ok, return_indices=True)
        search = search[ri, ci]
    # Band-pass: smoothed by one block, so that crops a stride apart still correlate, less
    # the broad ramp from sea to hills that every coast shares and that tells none apart.
    search = ndimage.gaussian_filter(search, 1.0, mode="nearest") - ndimage.gaussian_filter(
        search, 8.0, mode="nearest"
    )
    mid, mid_ok = _block_mean(metres, valid, max(1, round(side / MID_SIDE)))
    return DemSignature(
        heights=heights,
        search=search.astype(np.float32),
        mid=mid.astype(np.float32),
        mid_valid=mid_ok,
        embedding=dem_embedding(dem),
        land=int((heights > 0).sum()),
    )


def _block_mean(
    values: np.ndarray, valid: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``factor``-px blocks over valid pixels (the last partial row/column dropped).

    Returns:
        ``(H // factor, W // factor)`` float64 means (0 where invalid) and bool validity
        (at least half the block valid).
    """
    h, w = values.shape[0] // factor, values.shape[1] // factor
    v = values[: h * factor, : w * factor].reshape(h, factor, w, factor)
    m = valid[: h * factor, : w * factor].reshape(h, factor, w, factor)
    counts = m.sum(axis=(1, 3))
    sums = np.where(m, v, 0).sum(axis=(1, 3))
    ok = counts >= factor * factor / 2
    return np.where(ok, sums / np.maximum(counts, 1), 0.0), ok
