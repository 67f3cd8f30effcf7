"""Tiles: reading and writing, catalogues, validation, synthetic data, areas and folds."""

from kelp.bands import BAND_NAMES, DEFAULT_BAND_ORDER, MISSING
from kelp.data.catalog import Catalog, Problem, TileRecord, open_catalog
from kelp.data.io import pack_submission, read_image, read_mask, write_mask
from kelp.data.tile import Tile, load_tile

__all__ = [
    "BAND_NAMES",
    "DEFAULT_BAND_ORDER",
    "MISSING",
    "Catalog",
    "Problem",
    "Tile",
    "TileRecord",
    "load_tile",
    "open_catalog",
    "pack_submission",
    "read_image",
    "read_mask",
    "write_mask",
]
