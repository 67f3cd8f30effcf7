"""Per-pixel features and training rows of the two published tree recipes.

Both recipes are computed from one tile at a time, exactly as their write-ups describe them
(see ``shared/reference/kelp-wanted.md``, "Published per-pixel tree recipes"):

- **1st place** (Team Epoch): :data:`FIRST_PLACE_FEATURES`, 11 channels. The tile's water
  is ``DEM < 1`` with all seven bands present; land is ``DEM >= 1`` (a missing DEM is
  neither). Missing values become 0.
- **2nd place** (xultaeculcis): :data:`SECOND_PLACE_FEATURES`, 22 channels. ``-32768``
  becomes NaN first; the indices are kept on clear water only
  (:func:`kelp.features.channels.clear_water`: QA == 0, not land, the five spectral bands
  present) and are NaN elsewhere. NaN stays NaN: XGBoost routes it as missing.

Rows: :func:`uniform_pixels` draws the 1st place's uniform sample of a tile, and
:func:`second_place_pixels` the 2nd place's kelp + ring + 2 % rows.
"""

from typing import Final

import numpy as np
from scipy import ndimage

from kelp.bands import MISSING
from kelp.data.tile import Tile
from kelp.features.channels import clear_water, land_closeness, spectral_bands
from kelp.features.indices import compute_index, compute_indices

__all__ = [
    "FIRST_PLACE_FEATURES",
    "RING_SIZE",
    "SECOND_PLACE_FEATURES",
    "SECOND_PLACE_INDICES",
    "first_place_features",
    "ndvi_probability",
    "second_place_features",
    "second_place_pixels",
    "uniform_pixels",
]

FIRST_PLACE_FEATURES: Final[tuple[str, ...]] = (
    "swir", "nir", "red", "green", "blue", "NDWI", "MNDWI", "NDVI",
    "nir_minus_water_median", "ndvi_minus_water_median", "land_closeness",
)  # fmt: skip

#: The 2nd place's indices, in their order.
SECOND_PLACE_INDICES: Final[tuple[str, ...]] = (
    "NDVI", "NDWI", "ATSAVI", "AVI", "CI", "ClGreen", "GBNDVI", "GVMI", "KIVU", "MVI",
    "NormNIR", "PNDVI", "SABI", "WDRVI",
)  # fmt: skip

SECOND_PLACE_FEATURES: Final[tuple[str, ...]] = (
    "swir", "nir", "red", "green", "blue", "qa", "dem", *SECOND_PLACE_INDICES, "DEMWM",
)  # fmt: skip

#: Side of the square that dilates the mask into the 2nd place's ring (5 px each way).
RING_SIZE: Final[int] = 11


def ndvi_probability(tile: Tile) -> np.ndarray:
    """``(H, W) float32`` ``(NDVI + 1) / 2`` on clear water, 0 elsewhere.

    A threshold ``p`` on this map is the rule "NDVI >= 2p - 1 on clear water".
    """
    ndvi = compute_index("NDVI", spectral_bands(tile))
    prob = np.clip((ndvi + 1) / 2, 0, 1)
    return np.where(clear_water(tile), prob, 0).astype(np.float32)


def first_place_features(tile: Tile) -> np.ndarray:
    """The 1st place's 11 channels of a tile.

    Args:
        tile: any tile.

    Returns:
        ``(11, H, W) float32`` in :data:`FIRST_PLACE_FEATURES` order, 0 where missing (a
        median offset is 0 everywhere on a tile without water).
    """
    bands = spectral_bands(tile)
    dem = tile.band("dem")
    water = (dem < 1) & np.all(tile.image != MISSING, axis=0)
    ndwi, mndwi, ndvi = compute_indices(["NDWI", "MNDWI", "NDVI"], bands)
    offsets = []
    for channel in (bands["nir"], ndvi):
        if water.any():
            offsets.append(channel - np.float32(np.median(channel[water])))
        else:
            offsets.append(np.full(channel.shape, np.nan, np.float32))
    closeness = land_closeness(dem >= 1)
    stack = np.stack(
        [*(bands[b] for b in FIRST_PLACE_FEATURES[:5]), ndwi, mndwi, ndvi, *offsets, closeness]
    ).astype(np.float32, copy=False)
    return np.nan_to_num(stack, copy=False, nan=0.0)


def second_place_features(tile: Tile) -> np.ndarray:
    """The 2nd place's 22 channels of a tile.

    Args:
        tile: any tile.

    Returns:
        ``(22, H, W) float32`` in :data:`SECOND_PLACE_FEATURES` order: the seven raw bands
        (NaN where missing), the indices (NaN off clear water) and ``DEMWM = max(DEM, 0)``
        (NaN where the DEM is missing).
    """
    raw = np.where(tile.image == MISSING, np.float32(np.nan), tile.image.astype(np.float32))
    bands = dict(zip(SECOND_PLACE_FEATURES[:5], raw[:5], strict=True))
    indices = compute_indices(list(SECOND_PLACE_INDICES), bands)
    indices[:, ~clear_water(tile)] = np.nan
    demwm = np.maximum(raw[6], 0)[None]
    return np.concatenate([raw, indices, demwm]).astype(np.float32, copy=False)


def uniform_pixels(n_pixels: int, n_take: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of a uniform sample without replacement, in raster order.

    Args:
        n_pixels: pixels of the tile.
        n_take: how many to draw; every pixel when ``n_take >= n_pixels``.
        rng: the tile's generator.

    Returns:
        ``(min(n_take, n_pixels),) int64`` increasing indices.
    """
    if n_take >= n_pixels:
        return np.arange(n_pixels)
    return np.sort(rng.choice(n_pixels, size=max(n_take, 0), replace=False))


def second_place_pixels(
    mask: np.ndarray, rng: np.random.Generator, other_fraction: float = 0.02
) -> np.ndarray:
    """Flat indices of the 2nd place's rows: every kelp pixel, every ring pixel (the mask
    dilated by an 11 x 11 square, minus the mask) and ``other_fraction`` of the rest.

    Args:
        mask: ``(H, W)`` 0/1 kelp mask.
        rng: the tile's generator (draws the other pixels, each kept with that chance).
        other_fraction: share of the remaining pixels to keep.

    Returns:
        ``(N,) int64`` increasing flat indices.
    """
    kelp = mask.astype(bool)
    near = ndimage.binary_dilation(kelp, structure=np.ones((RING_SIZE, RING_SIZE), bool))
    flat = near.ravel()
    keep = flat.copy()
    others = np.flatnonzero(~flat)
    keep[others[rng.random(len(others)) < other_fraction]] = True
    return np.flatnonzero(keep)
