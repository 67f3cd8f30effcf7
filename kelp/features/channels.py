"""Masks and context channels of a tile, all ``(H, W)`` and computed from its QA and DEM.

Missing data (``-32768``) becomes NaN before any arithmetic. A missing DEM pixel counts as
water (never as land): the land mask must never remove kelp.
"""

import numpy as np
from scipy import ndimage

from kelp.bands import MISSING
from kelp.data.tile import Tile
from kelp.features.config import SpectralBand

__all__ = [
    "SPECTRAL_BANDS",
    "clear_water",
    "land_closeness",
    "land_mask",
    "missing_to_nan",
    "spectral_bands",
    "water_medians",
]

SPECTRAL_BANDS: tuple[SpectralBand, ...] = ("swir", "nir", "red", "green", "blue")


def missing_to_nan(values: np.ndarray) -> np.ndarray:
    """Integer DNs as float32, NaN where missing (``-32768``)."""
    return np.where(values == MISSING, np.float32(np.nan), values.astype(np.float32))


def spectral_bands(tile: Tile) -> dict[str, np.ndarray]:
    """The five reflective bands as ``(H, W) float32`` raw DNs, NaN where missing."""
    return {name: missing_to_nan(tile.band(name)) for name in SPECTRAL_BANDS}


def land_mask(tile: Tile) -> np.ndarray:
    """``(H, W) bool``: valid DEM above 0 m."""
    dem = tile.band("dem")
    return (dem > 0) & (dem != MISSING)


def clear_water(tile: Tile) -> np.ndarray:
    """``(H, W) bool``: QA == 0 (no cloud, not corrupted), not land, all five bands present.

    This is where the winners kept spectral indices: kelp only grows there.
    """
    present = np.all(tile.image[:5] != MISSING, axis=0)
    return (tile.band("qa") == 0) & ~land_mask(tile) & present


def land_closeness(land: np.ndarray) -> np.ndarray:
    """``(H, W) float32``: ``1 / (1 + 0.1 * d)``, d = Euclidean distance to land in pixels.

    1 on land, falling with distance; 0 everywhere when the tile has no land (1st place's
    "land closeness" feature).
    """
    if not land.any():
        return np.zeros(land.shape, np.float32)
    distance = ndimage.distance_transform_edt(~land)
    return (1.0 / (1.0 + 0.1 * distance)).astype(np.float32)


def water_medians(bands: dict[str, np.ndarray], clear: np.ndarray) -> dict[str, np.float32]:
    """Each band's median over clear water; ``band - median`` removes per-date illumination
    and haze (the ``<band>_offset`` channels).

    Args:
        bands: ``(H, W) float32`` bands with NaN for missing.
        clear: ``(H, W) bool`` clear-water mask.

    Returns:
        The median per band; NaN when the tile has no clear water (every offset NaN).
    """
    any_clear = bool(clear.any())
    return {
        name: np.float32(np.median(band[clear])) if any_clear else np.float32(np.nan)
        for name, band in bands.items()
    }
