"""Tiles read one at a time, and the per-tile row budget of a uniform pixel sample.

A baseline fits on a few hundred tiles; holding their images (and a dense float64 table of
their pixels) at once would take gigabytes. :class:`TileSet` is a sequence of tiles that
reads each one from disk when indexed, and knows each tile's pixel count from its GeoTIFF
header, so a sampler can plan how many rows each tile gives before reading any of them.
"""

import math
from collections.abc import Iterator, Sequence
from typing import overload

import rasterio

from kelp.bands import DEFAULT_BAND_ORDER
from kelp.data.catalog import TileRecord
from kelp.data.tile import Tile, load_tile
from kelp.errors import TileError

__all__ = ["TileSet", "row_budget", "tile_pixels"]


class TileSet(Sequence[Tile]):
    """Catalogue entries read lazily as :class:`~kelp.data.tile.Tile` s.

    Args:
        records: the tiles, in the order to read them.
        band_order: names of the files' bands, first band first.
    """

    def __init__(
        self, records: Sequence[TileRecord], band_order: Sequence[str] = DEFAULT_BAND_ORDER
    ) -> None:
        self.records = tuple(records)
        self.band_order = tuple(band_order)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, i: int) -> Tile: ...

    @overload
    def __getitem__(self, i: slice) -> "TileSet": ...

    def __getitem__(self, i: int | slice) -> "Tile | TileSet":
        if isinstance(i, slice):
            return TileSet(self.records[i], self.band_order)
        return load_tile(self.records[i], self.band_order)

    def __iter__(self) -> Iterator[Tile]:
        for record in self.records:
            yield load_tile(record, self.band_order)

    @property
    def tile_ids(self) -> tuple[str, ...]:
        """The tiles' ids, in order."""
        return tuple(r.tile_id for r in self.records)

    def pixels(self) -> list[int]:
        """``H * W`` of each tile, read from the image headers only.

        Raises:
            TileError: a file that is not a readable raster.
        """
        out = []
        for record in self.records:
            try:
                with rasterio.open(record.image) as src:
                    out.append(src.height * src.width)
            except rasterio.errors.RasterioIOError as error:
                raise TileError(record.image, f"not a readable GeoTIFF ({error})") from None
        return out


def tile_pixels(tiles: Sequence[Tile]) -> list[int]:
    """``H * W`` of each tile, without reading the images of a :class:`TileSet`."""
    if isinstance(tiles, TileSet):
        return tiles.pixels()
    return [t.shape[0] * t.shape[1] for t in tiles]


def row_budget(pixels: Sequence[int], max_rows: int) -> list[int]:
    """Rows each tile gives to a uniform sample of at most ``max_rows`` pixels in all.

    Every pixel when they fit; otherwise each tile gives ``max_rows * its pixels / total``
    (rounded down), so every pixel of every tile has about the same chance.

    Args:
        pixels: pixel count of each tile.
        max_rows: the most rows in all (>= 1).

    Returns:
        Rows per tile, in order.
    """
    total = sum(pixels)
    if total <= max_rows:
        return list(pixels)
    return [math.floor(max_rows * p / total) for p in pixels]
