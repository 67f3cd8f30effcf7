"""Read and write tiles: multispectral images, kelp masks, predicted masks, submissions.

Images come back as ``(7, H, W) int32`` in the canonical band order of
:data:`kelp.bands.BAND_NAMES` whatever the file's order; ``-32768`` is kept as the
missing value (:data:`~kelp.bands.MISSING`) so that callers decide how to mask it.
Every error names the file and says what is wrong with it.
"""

import os
import tarfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from kelp._files import atomic_path
from kelp.bands import BAND_NAMES, DEFAULT_BAND_ORDER, check_band_order
from kelp.errors import InputError, TileError

__all__ = [
    "pack_submission",
    "raster_grid",
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
]


def _read(path: Path) -> tuple[np.ndarray, Affine]:
    if not path.is_file():
        raise TileError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                data = src.read()
                transform = src.transform
    except RasterioIOError as error:
        raise TileError(path, f"not a readable GeoTIFF ({error})") from None
    if not np.issubdtype(data.dtype, np.integer):
        raise TileError(
            path, f"data type is {data.dtype}; Kelp Wanted tiles hold integers (int16/int32)"
        )
    return data, transform


def raster_grid(path: str | os.PathLike[str]) -> tuple[tuple[int, int], Affine] | None:
    """``((H, W), transform)`` of a raster whose every pixel can be read, whatever its
    content; ``None`` for a file that cannot be read (missing, truncated, not a raster)."""
    try:
        data, transform = _read(Path(path))
    except TileError as error:
        if "data type is" not in error.problem:
            return None
        with rasterio.open(path) as src:  # readable, but not integers
            return (src.height, src.width), src.transform
    return (data.shape[1], data.shape[2]), transform


def read_image(
    path: str | os.PathLike[str], band_order: Sequence[str] = DEFAULT_BAND_ORDER
) -> tuple[np.ndarray, Affine]:
    """Read a satellite tile.

    Args:
        path: ``<tile_id>_satellite.tif``.
        band_order: names of the file's bands, first band first.

    Returns:
        ``(image, transform)``: image is ``(7, H, W) int32`` in canonical band order.

    Raises:
        TileError: unreadable file, wrong band count, or non-integer data.
    """
    path = Path(path)
    order = check_band_order(band_order)
    data, transform = _read(path)
    if data.shape[0] != len(order):
        raise TileError(
            path,
            f"has {data.shape[0]} bands, expected {len(order)} ({', '.join(order)}); "
            "set the band order if the file holds them differently",
        )
    image = data[[order.index(name) for name in BAND_NAMES]].astype(np.int32, copy=False)
    return image, transform


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a kelp mask.

    Returns:
        ``(H, W) uint8`` with values in {0, 1}.

    Raises:
        TileError: unreadable file, more than one band, non-integer data or values
            other than 0 and 1.
    """
    path = Path(path)
    data, _ = _read(path)
    if data.shape[0] != 1:
        raise TileError(path, f"has {data.shape[0]} bands, a kelp mask has 1")
    mask = data[0]
    bad = np.setdiff1d(np.unique(mask), [0, 1])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise TileError(path, f"mask values must be 0 or 1, found {shown}")
    return mask.astype(np.uint8)


def write_image(
    path: str | os.PathLike[str],
    image: np.ndarray,
    transform: Affine | None = None,
    band_order: Sequence[str] = DEFAULT_BAND_ORDER,
) -> None:
    """Write a ``(7, H, W)`` canonical-order image as an int16 GeoTIFF without CRS, atomically.

    Values must fit int16 (``-32768`` = missing), as in the Kelp Wanted files.
    """
    order = check_band_order(band_order)
    info = np.iinfo(np.int16)
    if image.ndim != 3 or image.shape[0] != len(BAND_NAMES):
        raise ValueError(f"image must be (7, H, W), got {image.shape}")
    if image.min() < info.min or image.max() > info.max:
        raise ValueError(f"image values must fit int16, got [{image.min()}, {image.max()}]")
    data = image[[BAND_NAMES.index(name) for name in order]].astype(np.int16)
    _write(Path(path), data, transform, compress=None)


def write_mask(
    path: str | os.PathLike[str],
    mask: np.ndarray,
    transform: Affine | None = None,
    crs: rasterio.crs.CRS | None = None,
) -> None:
    """Write a ``(H, W)`` 0/1 mask as a compressed uint8 GeoTIFF, atomically.

    Args:
        path: destination, e.g. ``<tile_id>_kelp.tif``.
        mask: ``(H, W)`` array of 0/1 (bool or any integer type).
        transform: the input tile's transform, so the mask lines up with it.
        crs: optional; Kelp Wanted tiles have none.

    Raises:
        ValueError: if the mask is not 2-D or holds values other than 0 and 1.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if mask.dtype != bool and np.setdiff1d(np.unique(mask), [0, 1]).size:
        raise ValueError(f"mask for {path} must hold only 0 and 1")
    _write(Path(path), mask.astype(np.uint8)[None], transform, compress="deflate", crs=crs)


def _write(
    path: Path,
    data: np.ndarray,
    transform: Affine | None,
    compress: str | None,
    crs: rasterio.crs.CRS | None = None,
) -> None:
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "transform": transform if transform is not None else Affine.identity(),
    }
    if crs is not None:
        profile["crs"] = crs
    if compress:
        profile["compress"] = compress
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)


def pack_submission(masks: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Pack predicted masks into a tar in the competition's naming (``<tile_id>_kelp.tif``).

    Args:
        masks: mask files; each name must end in ``_kelp.tif``.
        out: the tar to write (atomically), e.g. ``submission.tar``.

    Returns:
        The path of the tar.

    Raises:
        InputError: if there is no mask, a name does not end in ``_kelp.tif`` or repeats.
    """
    paths = sorted(Path(p) for p in masks)
    if not paths:
        raise InputError(f"no masks to pack into {out}: predict the test tiles first")
    names = [p.name for p in paths]
    wrong = [n for n in names if not n.endswith("_kelp.tif")]
    if wrong:
        raise InputError(f"mask names must be <tile_id>_kelp.tif, got {wrong[:3]}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"repeated mask names {repeated[:3]}")
    out = Path(out)
    with atomic_path(out) as tmp, tarfile.open(tmp, "w") as tar:
        for p in paths:
            tar.add(p, arcname=p.name)
    return out
