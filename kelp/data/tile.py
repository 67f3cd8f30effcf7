"""A loaded, validated tile: image, optional mask and georeferencing."""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from kelp.bands import BAND_NAMES, DEFAULT_BAND_ORDER, MISSING, BandName
from kelp.data.catalog import TileRecord
from kelp.data.io import read_image, read_mask
from kelp.errors import TileError

__all__ = ["Tile", "load_tile"]


@dataclass(frozen=True, eq=False)
class Tile:
    """One tile in memory.

    Attributes:
        tile_id: e.g. ``"AA498489"``.
        image: ``(7, H, W) int32`` in canonical band order; ``-32768`` = missing.
        mask: ``(H, W) uint8`` 0/1 kelp mask, or ``None`` for test tiles.
        transform: the image's affine transform (identity when it has none).
    """

    tile_id: str
    image: np.ndarray
    mask: np.ndarray | None
    transform: Affine

    def band(self, name: BandName) -> np.ndarray:
        """``(H, W) int32`` view of one band by name (``"nir"``, ``"dem"``, ...)."""
        return self.image[BAND_NAMES.index(name)]

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.image.shape[1], self.image.shape[2]


def load_tile(
    record: TileRecord | str | os.PathLike[str],
    band_order: Sequence[str] = DEFAULT_BAND_ORDER,
    mask: str | os.PathLike[str] | None = None,
) -> Tile:
    """Read and validate a tile's image and (when it has one) its mask.

    Args:
        record: a catalogue entry, or the path of a ``<tile_id>_satellite.tif``.
        band_order: names of the file's bands, first band first.
        mask: the mask path when ``record`` is a path.

    Returns:
        The tile.

    Raises:
        TileError: unreadable file, wrong band count, non-integer data, mask values other
            than 0/1, image/mask shape mismatch, or every spectral pixel missing.
    """
    if not isinstance(record, TileRecord):
        image_path = Path(record)
        tile_id = image_path.name.removesuffix("_satellite.tif")
        mask_path = Path(mask) if mask is not None else None
        record = TileRecord(tile_id, image_path, mask_path, "train" if mask_path else "test")
    image, transform = read_image(record.image, band_order)
    if np.all(image[:5] == MISSING):
        raise TileError(record.image, "every pixel is missing (-32768) in every spectral band")
    kelp = None
    if record.mask is not None:
        kelp = read_mask(record.mask)
        if kelp.shape != image.shape[1:]:
            raise TileError(
                record.mask,
                f"mask shape {kelp.shape} differs from image shape {image.shape[1:]} "
                f"({record.image.name})",
            )
    return Tile(record.tile_id, image, kelp, transform)
