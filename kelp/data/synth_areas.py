"""The areas of the synthetic generator: seeded random fields and each area's fixed layout
(DEM, land, vegetation, kelp beds), and stress DEMs cut from it.

See :mod:`kelp.data.synth` for the model.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
from scipy import ndimage

from kelp.bands import MISSING

__all__ = [
    "MARGIN",
    "REF_SIZE",
    "Area",
    "area_dem",
    "fractal_noise",
    "make_area",
    "seeded_rng",
    "shift",
    "smooth_noise",
    "stress_dems",
]

REF_SIZE: Final = 350  # spatial scales below are in pixels of a 350 px tile
MARGIN: Final = 3  # largest shift between the dates of an area, px


@dataclass(frozen=True)
class Area:
    """One area's fixed layout on a ``(size + 2 * margin)`` square grid."""

    dem: np.ndarray  # int16 metres, 0 at sea
    land: np.ndarray  # float32 land abundance in [0, 1]; > 0.5 exactly where dem > 0
    veg: np.ndarray  # float32 vegetated share of the land
    bed: np.ndarray  # float32 kelp bed score, > 0 where a bed can grow
    coast_dist: np.ndarray  # float32 px from each pixel to the nearest land pixel
    near_shore: np.ndarray  # float32 in (0, 1], decays offshore (turbidity)
    kelp_reach: float  # px from shore within which beds grow
    margin: int = MARGIN  # largest shift of a date's window each way, px


def seeded_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    # Independent streams per area/tile make every tile independent of generation order.
    return np.random.default_rng([seed, stream, index])


def shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift the last two axes by ``(dy, dx)`` px, filling with zeros (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = a[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@lru_cache(maxsize=4)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    return axis[:, None], axis[None, :]


def smooth_noise(rng: np.random.Generator, n: int, cells: int, order: int = 1) -> np.ndarray:
    """``(n, n) float32`` noise with features about ``n / cells`` px wide."""
    small = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return ndimage.zoom(small, n / (cells + 1), order=order, mode="nearest")


def fractal_noise(
    rng: np.random.Generator, n: int, cells: tuple[int, ...], order: int
) -> np.ndarray:
    """``(n, n) float32`` unit-variance fractal noise, amplitude halving per octave.

    Octaves are summed on a grid of at most ``n`` px sized to the finest octave, then zoomed
    once: cheap, and finer detail than the finest octave would be invisible anyway.
    """
    m = min(n, 4 * max(cells))
    total = np.zeros((m, m), np.float32)
    for octave, c in enumerate(cells):
        total += 0.5**octave * smooth_noise(rng, m, c, order)
    total /= total[::4, ::4].std() + 1e-6
    return total if m == n else ndimage.zoom(total, n / m, order=1, mode="nearest")


def make_area(seed: int, index: int, size: int, margin: int = MARGIN) -> Area:
    """Area ``index`` of a dataset of ``size`` px tiles whose dates shift by up to ``margin``
    px each way (the canvas is ``size + 2 * margin`` px)."""
    rng = seeded_rng(seed, 0, index)
    s = size / REF_SIZE
    n = size + 2 * margin
    yy, xx = _grid(n)
    kind = rng.choice(3, p=[0.12, 0.15, 0.73])  # almost all sea, mostly land, coast
    land_share = (rng.uniform(0.0, 0.03), rng.uniform(0.75, 0.97), rng.uniform(0.15, 0.7))[kind]
    angle = rng.uniform(0, 2 * np.pi)
    h = np.cos(angle) * xx + np.sin(angle) * yy
    h = h + rng.uniform(0.3, 1.0) * fractal_noise(rng, n, (3, 6, 12, 24, 48), order=3)
    h += 0.03 * smooth_noise(rng, n, 120)  # crenulated shores and rough slopes
    h -= np.quantile(h[::2, ::2], 1 - land_share)  # the coastline is the zero contour
    is_land = h > 0
    relief = rng.uniform(40, 600)
    top = max(float(h.max()), 1e-6)
    dem = np.where(is_land, np.maximum(1, np.rint(relief * np.clip(h / top, 0, 1) ** 1.3)), 0)
    # A ~2 px soft shore: mixed land/water pixels are what makes coasts look like kelp.
    land = np.clip(0.5 + h * (n / 6), 0, 1).astype(np.float32)
    barren = rng.uniform(0.5, 3.0) * dem / relief  # high ground is barer
    veg = 1 / (1 + np.exp(barren - 1.5 * fractal_noise(rng, n, (4, 8, 16, 64), order=1) - 1))
    if is_land.any():
        coast_dist = ndimage.distance_transform_edt(~is_land).astype(np.float32)
    else:
        coast_dist = np.full((n, n), np.inf, np.float32)
    rocky = smooth_noise(rng, n, 5) > rng.uniform(-0.8, 0.6) if rng.random() > 0.2 else False
    bed = fractal_noise(rng, n, (8, 20, 50), order=1) - rng.uniform(-0.3, 0.5)
    return Area(
        dem=dem.astype(np.int16),
        land=land,
        veg=veg.astype(np.float32),
        bed=np.where(rocky, bed, -9.0).astype(np.float32),
        coast_dist=coast_dist,
        near_shore=np.exp(-coast_dist / (10 * s)).astype(np.float32),
        kelp_reach=max(1.5, rng.uniform(2, 7) * s),
        margin=margin,
    )


def area_dem(seed: int, index: int, side: int) -> np.ndarray:
    """One generator area's DEM on a ``(side, side)`` canvas, e.g. larger than a tile.

    The terrain is that of the generator's area ``index`` (same kinds: almost all sea,
    mostly land, coast), laid out on a canvas of ``side`` px, so that windows of a smaller
    tile can be cut from it at any offset (see :func:`stress_dems`).

    Args:
        seed: non-negative generator seed.
        index: area number.
        side: canvas side in px, >= ``32 + 2 * 3``.

    Returns:
        ``(side, side)`` int16 DEM in metres, 0 at sea, >= 1 on land.

    Raises:
        ValueError: if ``side`` is too small.
    """
    if side < 32 + 2 * MARGIN:
        raise ValueError(f"side must be at least {32 + 2 * MARGIN} px, got {side}")
    return make_area(seed, index, side - 2 * MARGIN).dem


def stress_dems(
    canvas: np.ndarray,
    size: int,
    n_dates: int,
    seed: int | Sequence[int],
    *,
    shift: float = 0.2,
    tide: float = 0.4,
    voids: float = 0.3,
) -> np.ndarray:
    """Dates of one area's DEM under shifts, tides and voids as hard as in real tiles, or harder.

    Each date is a ``size`` px window of ``canvas`` at a random offset (so two dates are
    shifted by up to ``shift * size`` px each way), then a tide floods the low land: pixels
    below the date's water level (in metres: the ``u``-quantile of the canvas's land heights,
    ``u`` uniform in ``[0, tide]``) read 0, as the intertidal strip does at high tide (with
    ``tide=0.4`` a place with 22% land shows 13-22%); then DEM voids (``-32768``), blobs of
    smoothed noise covering a share uniform in ``[0, voids]`` of the tile.

    Args:
        canvas: ``(S, S')`` integer DEM in metres (int16 range), 0 at sea, both sides
            ``>= size + round(shift * size)`` (e.g. :func:`area_dem` with that side).
        size: tile side, px.
        n_dates: number of dates, >= 1.
        seed: seeds the offsets, tides and voids (an int or a sequence such as
            ``[seed, area]``).
        shift: largest shift between two dates as a fraction of ``size``, in ``[0, 0.5]``.
        tide: largest share of the land that a date's tide floods, in ``[0, 1)``.
        voids: largest share of a tile that is void, in ``[0, 1)``.

    Returns:
        ``(n_dates, size, size)`` int16 DEMs, ``-32768`` = void.

    Raises:
        ValueError: an argument is out of range or ``canvas`` is too small.
    """
    reach = round(shift * size)
    problems = [
        f"size must be >= 8, got {size}" if size < 8 else "",
        f"n_dates must be >= 1, got {n_dates}" if n_dates < 1 else "",
        f"shift must be in [0, 0.5], got {shift}" if not 0 <= shift <= 0.5 else "",
        f"tide must be in [0, 1), got {tide}" if not 0 <= tide < 1 else "",
        f"voids must be in [0, 1), got {voids}" if not 0 <= voids < 1 else "",
    ]
    if canvas.ndim != 2 or min(canvas.shape) < size + reach:
        problems.append(
            f"canvas must be 2-D and at least {size + reach} px a side for size {size} and "
            f"shift {shift}, got shape {canvas.shape}"
        )
    problems = [p for p in problems if p]
    if problems:
        raise ValueError("; ".join(problems))
    rng = np.random.default_rng(seed)
    heights = canvas[canvas > 0]
    out = np.empty((n_dates, size, size), np.int16)
    for d in range(n_dates):
        oy, ox = rng.integers(0, reach + 1, 2)
        dem = canvas[oy : oy + size, ox : ox + size].astype(np.int16)
        if heights.size:
            level = np.quantile(heights, rng.uniform(0, tide))
            dem[(dem > 0) & (dem < level)] = 0
        share = rng.uniform(0, voids)
        if share > 0:
            # Blobs a sixth of the tile across, thresholded to cover exactly ``share``.
            field = smooth_noise(rng, size, 6)
            dem[field > np.quantile(field, 1 - share)] = MISSING
        out[d] = dem
    return out
