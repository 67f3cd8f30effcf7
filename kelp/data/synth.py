"""Synthetic Kelp Wanted datasets with realistic spectra, areas and artefacts.

The real dataset cannot be downloaded on our machines, so every test and demo runs on what
:func:`synthesize` writes: the same layout, file names, data types and metadata as the
DrivenData download (``train_satellite/``, ``train_kelp/``, ``test_satellite/``,
``metadata.csv``), 7-band int16 images without CRS in the order SWIR1, NIR, Red, Green,
Blue, QA (1 = cloud), DEM (metres, > 0 land), and 0/1 kelp masks.

**Scenes.** Tiles come from areas (AOIs), about one per four tiles, each seen on 2-8 dates.
Test tiles come from held-out places: whole areas, drawn (seeded) until about
``test_fraction`` of the tiles are test tiles, so no place has both train and test tiles
(at least one area stays train).
An area owns a DEM (a ramp across the tile plus fractal noise: the coastline is its zero
contour, land rises to tens or hundreds of metres, the sea is 0), a vegetation/bare-ground
layout and its kelp beds. Its dates share all of that, seen through a window shifted by up
to 3 px each way, and differ in clouds, haze, noise, season, tide and kelp extent; so random
tile splits leak and grouping by area matters. About 12% of areas are (almost) all sea, 15%
mostly land. Kelp grows in patches of smoothed noise on rocky stretches of coast, within 2-7
px of the shore; 20% of areas have no rocky coast and 15% of dates show no canopy.

**Spectral model.** Pixels mix classes linearly by abundance (a coastal pixel is part land,
a kelp pixel part canopy, part water). Reflectances are approximate surface reflectances of
typical Landsat scenes (clear sea water, floating Macrocystis canopy, grass/heath,
soil/rock/peat, thick cloud; haze is an additive path-radiance term strongest in blue):

==============  ======  =====  =====  =====  =====
class           SWIR1   NIR    Red    Green  Blue
==============  ======  =====  =====  =====  =====
water           0.005   0.012  0.025  0.045  0.060
kelp canopy     0.030   0.110  0.030  0.050  0.050
vegetation      0.200   0.320  0.060  0.090  0.050
bare ground     0.280   0.240  0.170  0.130  0.100
cloud           0.420   0.550  0.550  0.560  0.580
haze (added)    0.010   0.030  0.050  0.060  0.080
turbid (added)  0.000   0.004  0.015  0.015  0.008
==============  ======  =====  =====  =====  =====

Digital numbers use the Landsat Collection 2 Level-2 scale (reflectance = DN * 0.0000275 -
0.2), i.e. ``DN = 7273 + K * reflectance`` with ``K = 36,364``: water lands at about
7,450-9,450 DN, land and cloud higher, values are clipped to [-32767, 32767].

**Artefacts.** Sensor noise (55-145 DN) and per-band gain (±4%); clouds (45% of tiles)
flagged in QA where their opacity exceeds 0.5, so their bright edges stay unflagged, with
shadows; thin haze (30%); turbid water near the shore; Landsat 7 SLC-off gaps (-32768 in
all five spectral bands: parallel tilted wedges) on half the tiles dated after 31 May 2003,
about 40% overall; DEM voids (-32768 in the DEM only, 12%) and DEM/spectra misalignment
(5%); label noise on tiles with kelp: a few flipped pixels, spurious or missed blobs and,
on 5% of tiles, a mask shifted by 1-2 px. Labels are the kelp beds whatever covers them, so
kelp under clouds stays 1 as in crowd labels. About a third of train tiles have no kelp and
kelp is about 0.6% of all pixels (0.45-0.8% for 200 tiles, by seed). Spatial scales are
set for 350 px tiles and shrink with the tile size, so smaller tiles keep similar class
fractions (kelp may reach at least 1.5 px offshore); noise and gaps stay per pixel.

**Stress DEMs.** :func:`stress_dems` cuts dates from an area's DEM (:func:`area_dem`, on a
canvas larger than the tile) under conditions harsher than the generator's and seen in real
tiles: windows shifted by up to 20% of the side, a tide flooding the low land (heights below
a per-date water level read 0) and void blobs over up to 30% of the tile. Tests and
``benchmarks/grouping.py`` use it to check area grouping.

**Extras** (synthetic only, not in ``metadata.csv``): ``test_kelp/<id>_kelp.tif``, the hidden
labels of the test tiles, and ``synthetic_areas.csv`` (``tile_id,aoi_id,date,split,
kelp_pixels``), each tile's true area, for scoring area grouping by adjusted Rand index.
"""

import csv
import datetime as dt
import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

import numpy as np
from scipy import ndimage

from kelp._files import atomic_path
from kelp._progress import track
from kelp.data.bands import MISSING
from kelp.data.io import write_image, write_mask

__all__ = ["SynthSummary", "area_dem", "stress_dems", "synthesize"]

_OFFSET: Final = 0.2 / 0.0000275  # DN at reflectance 0 (Collection 2 Level-2 scale)
_SCALE: Final = 1 / 0.0000275  # DN per unit reflectance
_SURFACE: Final = np.array(  # (5 bands, 4 classes): water, kelp, vegetation, bare
    [
        [0.005, 0.030, 0.200, 0.280],
        [0.012, 0.110, 0.320, 0.240],
        [0.025, 0.030, 0.060, 0.170],
        [0.045, 0.050, 0.090, 0.130],
        [0.060, 0.050, 0.050, 0.100],
    ],
    dtype=np.float32,
)
_CLOUD: Final = np.array([0.42, 0.55, 0.55, 0.56, 0.58], np.float32)[:, None, None]
_HAZE: Final = np.array([0.01, 0.03, 0.05, 0.06, 0.08], np.float32)[:, None, None]
_TURBID: Final = np.array([0.0, 0.004, 0.015, 0.015, 0.008], np.float32)[:, None, None]

_REF_SIZE: Final = 350  # spatial scales below are in pixels of a 350 px tile
_MARGIN: Final = 3  # largest shift between the dates of an area, px
_FIRST_DAY: Final = dt.date(1999, 7, 1)  # Landsat 7 operational
_SLC_FAILURE: Final = dt.date(2003, 5, 31)
_N_DAYS: Final = (dt.date(2023, 12, 31) - _FIRST_DAY).days
_DIRS: Final = ("train_satellite", "train_kelp", "test_satellite", "test_kelp")
_AREAS_CSV: Final = "synthetic_areas.csv"
_STAGING: Final = ".synth-partial"


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote.

    Attributes:
        root: the dataset directory.
        n_train: train tiles (each with a mask).
        n_test: test tiles.
        n_areas: areas (AOIs) the tiles were drawn from.
        seconds: wall time of the generation.
        kelp_fraction: kelp pixels / all pixels over the train masks.
        tiles_without_kelp: train tiles whose mask is empty.
        seed: the seed used.
        size: tile side, px.
    """

    root: Path
    n_train: int
    n_test: int
    n_areas: int
    seconds: float
    kelp_fraction: float
    tiles_without_kelp: int
    seed: int
    size: int


@dataclass(frozen=True)
class _TilePlan:
    index: int  # seeds the tile's generator
    tile_id: str
    area: int
    date: dt.date
    split: Literal["train", "test"]


@dataclass(frozen=True)
class _Area:
    """One area's fixed layout on a ``(size + 2 * _MARGIN)`` square grid."""

    dem: np.ndarray  # int16 metres, 0 at sea
    land: np.ndarray  # float32 land abundance in [0, 1]; > 0.5 exactly where dem > 0
    veg: np.ndarray  # float32 vegetated share of the land
    bed: np.ndarray  # float32 kelp bed score, > 0 where a bed can grow
    coast_dist: np.ndarray  # float32 px from each pixel to the nearest land pixel
    near_shore: np.ndarray  # float32 in (0, 1], decays offshore (turbidity)
    kelp_reach: float  # px from shore within which beds grow


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    # Independent streams per area/tile make every tile independent of generation order.
    return np.random.default_rng([seed, stream, index])


@lru_cache(maxsize=4)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    return axis[:, None], axis[None, :]


def _smooth(rng: np.random.Generator, n: int, cells: int, order: int = 1) -> np.ndarray:
    """``(n, n) float32`` noise with features about ``n / cells`` px wide."""
    small = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return ndimage.zoom(small, n / (cells + 1), order=order, mode="nearest")


def _fractal(rng: np.random.Generator, n: int, cells: tuple[int, ...], order: int) -> np.ndarray:
    """``(n, n) float32`` unit-variance fractal noise, amplitude halving per octave.

    Octaves are summed on a grid of at most ``n`` px sized to the finest octave, then zoomed
    once: cheap, and finer detail than the finest octave would be invisible anyway.
    """
    m = min(n, 4 * max(cells))
    total = np.zeros((m, m), np.float32)
    for octave, c in enumerate(cells):
        total += 0.5**octave * _smooth(rng, m, c, order)
    total /= total[::4, ::4].std() + 1e-6
    return total if m == n else ndimage.zoom(total, n / m, order=1, mode="nearest")


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift the last two axes by ``(dy, dx)`` px, filling with zeros (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = a[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _make_area(seed: int, index: int, size: int) -> _Area:
    rng = _rng(seed, 0, index)
    s = size / _REF_SIZE
    n = size + 2 * _MARGIN
    yy, xx = _grid(n)
    kind = rng.choice(3, p=[0.12, 0.15, 0.73])  # almost all sea, mostly land, coast
    land_share = (rng.uniform(0.0, 0.03), rng.uniform(0.75, 0.97), rng.uniform(0.15, 0.7))[kind]
    angle = rng.uniform(0, 2 * np.pi)
    h = np.cos(angle) * xx + np.sin(angle) * yy
    h = h + rng.uniform(0.3, 1.0) * _fractal(rng, n, (3, 6, 12, 24, 48), order=3)
    h += 0.03 * _smooth(rng, n, 120)  # crenulated shores and rough slopes
    h -= np.quantile(h[::2, ::2], 1 - land_share)  # the coastline is the zero contour
    is_land = h > 0
    relief = rng.uniform(40, 600)
    top = max(float(h.max()), 1e-6)
    dem = np.where(is_land, np.maximum(1, np.rint(relief * np.clip(h / top, 0, 1) ** 1.3)), 0)
    # A ~2 px soft shore: mixed land/water pixels are what makes coasts look like kelp.
    land = np.clip(0.5 + h * (n / 6), 0, 1).astype(np.float32)
    barren = rng.uniform(0.5, 3.0) * dem / relief  # high ground is barer
    veg = 1 / (1 + np.exp(barren - 1.5 * _fractal(rng, n, (4, 8, 16, 64), order=1) - 1))
    if is_land.any():
        coast_dist = ndimage.distance_transform_edt(~is_land).astype(np.float32)
    else:
        coast_dist = np.full((n, n), np.inf, np.float32)
    rocky = _smooth(rng, n, 5) > rng.uniform(-0.8, 0.6) if rng.random() > 0.2 else False
    bed = _fractal(rng, n, (8, 20, 50), order=1) - rng.uniform(-0.3, 0.5)
    return _Area(
        dem=dem.astype(np.int16),
        land=land,
        veg=veg.astype(np.float32),
        bed=np.where(rocky, bed, -9.0).astype(np.float32),
        coast_dist=coast_dist,
        near_shore=np.exp(-coast_dist / (10 * s)).astype(np.float32),
        kelp_reach=max(1.5, rng.uniform(2, 7) * s),
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
    if side < 32 + 2 * _MARGIN:
        raise ValueError(f"side must be at least {32 + 2 * _MARGIN} px, got {side}")
    return _make_area(seed, index, side - 2 * _MARGIN).dem


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
            field = _smooth(rng, size, 6)
            dem[field > np.quantile(field, 1 - share)] = MISSING
        out[d] = dem
    return out


def _slc_gaps(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size) bool`` Landsat 7 SLC-off gaps: tilted stripes widening along the row."""
    y = np.arange(size, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    period = rng.uniform(28, 36)
    along = y - rng.uniform(-0.25, 0.25) * x + rng.uniform(0, period)
    w0, w1 = rng.uniform(1, 12, 2)  # wedge: width grows across the tile
    return np.mod(along, period) < w0 + (w1 - w0) * x / size


def _label_noise(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """Crowd-label errors, only on tiles with kelp so that empty tiles stay empty."""
    mask = truth.copy()
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask
    size = mask.shape[0]
    if rng.random() < 0.3:
        count = rng.integers(1, 6)
        mask[rng.integers(0, size, count), rng.integers(0, size, count)] ^= True
    # A spurious blob a little off a labelled bed, then a missed patch inside one.
    for value, jitter, radius in ((True, 12, (1, 3)), (False, 0, (2, 6))):
        if rng.random() < 0.15:
            k = rng.integers(ys.size)
            cy, cx = np.clip(
                np.array([ys[k], xs[k]]) + rng.integers(-jitter, jitter + 1, 2), 0, size - 1
            )
            r = rng.integers(*radius)
            mask[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1] = value
    if rng.random() < 0.05:
        dy, dx = rng.choice([-2, -1, 1, 2], 2)
        mask = _shift(mask, int(dy), int(dx))
    return mask


def _make_tile(area: _Area, tile: _TilePlan, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image (7, H, W) int16, mask (H, W) bool)`` for one date of an area."""
    rng = _rng(seed, 1, tile.index)
    s = size / _REF_SIZE
    oy, ox = rng.integers(0, 2 * _MARGIN + 1, 2)
    win = np.s_[oy : oy + size, ox : ox + size]
    land = area.land[win]

    # Kelp: persistent beds, extent of the date (season, storms), canopy thinned by tide.
    score = area.bed[win] + 0.35 * _smooth(rng, size, 10) - rng.uniform(-0.2, 0.3)
    reach = area.kelp_reach * rng.uniform(0.6, 1.2)
    present = rng.random() > 0.15
    truth = present & (score > 0) & (area.coast_dist[win] <= reach) & (land < 0.5)
    density = np.clip(0.15 + score, 0.15, 1.0) * rng.uniform(0.4, 1.0, (size, size))
    kelp = np.where(truth, density * rng.uniform(0.5, 1.0), 0).astype(np.float32)
    kelp = np.minimum(kelp, 1 - land)
    veg = land * np.clip(area.veg[win] + rng.uniform(-0.25, 0.15), 0, 1)
    abundance = np.stack([1 - land - kelp, kelp, veg, land - veg]).astype(np.float32)
    refl = np.tensordot(_SURFACE, abundance, axes=1)
    refl += rng.uniform(0, 1.5) * (area.near_shore[win] * abundance[0]) * _TURBID

    qa = np.zeros((size, size), bool)
    if rng.random() < 0.45:
        field = _fractal(rng, size, (3, 6, 12, 24), order=1)
        cover = rng.uniform(0.02, 0.9)
        opacity = (field - np.quantile(field[::4, ::4], 1 - cover)) / rng.uniform(0.2, 0.6)
        opacity = np.clip(opacity, 0, 1)
        offset = rng.integers(5, 25, 2) * rng.choice([-1, 1], 2) * s
        refl *= 1 - 0.6 * _shift(opacity, *np.rint(offset).astype(int).tolist())
        texture = _CLOUD * (1 + 0.1 * np.clip(field, -2, 2))
        refl += opacity * (texture - refl)
        qa = opacity > 0.5  # thin edges brighten the scene but stay unflagged
    if rng.random() < 0.3:
        thickness = np.maximum(0.6 + 0.3 * _fractal(rng, size, (2, 4), order=3), 0)
        refl += rng.uniform(0, 0.8) * thickness * _HAZE
    refl *= rng.uniform(0.96, 1.04, 5).astype(np.float32)[:, None, None]

    # Triangular sensor noise (sum of two uniforms, unit variance): twice as fast as normal.
    # In-place arithmetic: this (5, H, W) conversion is the hottest part of the generator.
    noise = rng.random(refl.shape, dtype=np.float32)
    noise += rng.random(refl.shape, dtype=np.float32)
    noise -= 1
    noise *= np.sqrt(6) * rng.uniform(55, 145)
    refl *= _SCALE
    refl += noise + _OFFSET
    spectral = np.clip(np.rint(refl, out=refl), -32767, 32767, out=refl).astype(np.int16)
    if tile.date > _SLC_FAILURE and rng.random() < 0.5:
        spectral[:, _slc_gaps(rng, size)] = MISSING

    if rng.random() < 0.05:  # DEM and spectra misregistered, as in the real tiles
        oy, ox = np.clip(np.array([oy, ox]) + rng.choice([-2, -1, 1, 2], 2), 0, 2 * _MARGIN)
    dem = area.dem[oy : oy + size, ox : ox + size].copy()
    if rng.random() < 0.12:
        dem[_smooth(rng, size, 6) > rng.uniform(1.2, 2.0)] = MISSING
    image = np.concatenate([spectral, qa[None].astype(np.int16), dem[None]])
    return image, _label_noise(rng, truth)


def _plan(n_tiles: int, seed: int, test_fraction: float) -> tuple[list[_TilePlan], int]:
    """Tile ids, areas, dates and split; tiles of an area are consecutive (area caching) and
    share their split: test tiles come from held-out areas."""
    rng = _rng(seed, 2, 0)
    n_areas = max(1, round(n_tiles / 4))
    counts = np.full(n_areas, 2 if n_tiles >= 2 * n_areas else 1)
    for _ in range(n_tiles - int(counts.sum())):
        counts[rng.choice(np.flatnonzero(counts < 8))] += 1
    numbers: list[int] = []
    while len(numbers) < n_tiles:  # ids like AA498489: two letters, six digits, unique
        numbers = list(dict.fromkeys(numbers + rng.integers(0, 676_000_000, n_tiles).tolist()))
    ids = [
        chr(65 + v // 26_000_000) + chr(65 + v // 1_000_000 % 26) + f"{v % 1_000_000:06d}"
        for v in numbers[:n_tiles]
    ]
    test = _held_out_areas(rng, counts, min(round(n_tiles * test_fraction), n_tiles - 1))
    tiles: list[_TilePlan] = []
    for area, count in enumerate(counts.tolist()):
        split: Literal["train", "test"] = "test" if area in test else "train"
        for day in np.sort(rng.choice(_N_DAYS, count, replace=False)).tolist():
            index = len(tiles)
            date = _FIRST_DAY + dt.timedelta(days=day)
            tiles.append(_TilePlan(index, ids[index], area, date, split))
    return tiles, n_areas


def _held_out_areas(rng: np.random.Generator, counts: np.ndarray, target: int) -> set[int]:
    """Areas whose tiles are all test tiles: about ``target`` tiles, never every area.

    Areas are taken in a seeded random order while they fit within ``target`` tiles; a
    shortfall is then closed, if possible, by one more area of the missing size or by
    swapping a taken area for one that is that much larger. At least one area stays train.

    Args:
        rng: the plan's generator.
        counts: ``(A,)`` tiles per area.
        target: wanted number of test tiles.

    Returns:
        The held-out area numbers.
    """
    sizes = [int(c) for c in counts]
    chosen: list[int] = []
    for area in rng.permutation(len(sizes)).tolist():
        if len(chosen) < len(sizes) - 1 and sum(sizes[a] for a in chosen) + sizes[area] <= target:
            chosen.append(area)
    short = target - sum(sizes[a] for a in chosen)
    rest = [a for a in range(len(sizes)) if a not in chosen]
    if short > 0 and len(rest) > 1:
        extra = [a for a in rest if sizes[a] == short]
        swaps = [(c, u) for c in chosen for u in rest if sizes[u] - sizes[c] == short]
        if extra:
            chosen.append(extra[0])
        elif swaps:
            chosen[chosen.index(swaps[0][0])] = swaps[0][1]
    return set(chosen)


def _check(root: Path, n_tiles: int, seed: int, size: int, test_fraction: float) -> None:
    if n_tiles < 1:
        raise ValueError(f"n_tiles must be at least 1, got {n_tiles}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if size < 32:
        raise ValueError(f"size must be at least 32 px (Kelp Wanted tiles are 350), got {size}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if (root / "metadata.csv").exists():
        raise FileExistsError(
            f"{root} already holds a dataset (metadata.csv); choose another --out or delete it"
        )
    taken = [name for name in (*_DIRS, _AREAS_CSV) if (root / name).exists()]
    if taken:
        raise FileExistsError(
            f"{root} already holds {', '.join(taken)} from another dataset or an interrupted "
            "run; choose another --out or delete them"
        )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def synthesize(
    out: str | os.PathLike[str],
    n_tiles: int,
    seed: int = 0,
    size: int = 350,
    test_fraction: float = 0.2,
) -> SynthSummary:
    """Write a synthetic dataset in the Kelp Wanted layout (see the module docstring).

    Files appear under their final names only once all tiles are written (they are built in
    ``out/.synth-partial``, which a rerun after an interruption clears), ``metadata.csv`` last.
    The same arguments give byte-identical files.

    Args:
        out: dataset directory; created if missing, may already hold unrelated files.
        n_tiles: train plus test tiles.
        seed: non-negative seed; every area and tile draws from its own stream of it.
        size: tile side in px (the real tiles are 350).
        test_fraction: about this share of the tiles are test tiles, all of held-out areas
            (whole areas are train or test; at least one area stays train).

    Returns:
        A :class:`SynthSummary` of the dataset.

    Raises:
        ValueError: if ``n_tiles < 1``, ``seed < 0``, ``size < 32`` or ``test_fraction`` is
            outside ``[0, 1)``.
        FileExistsError: if ``out`` already holds a dataset.
    """
    root = Path(out)
    _check(root, n_tiles, seed, size, test_fraction)
    start = time.perf_counter()
    tiles, n_areas = _plan(n_tiles, seed, test_fraction)
    staging = root / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    for name in _DIRS:  # all four folders exist even when a split is empty
        (staging / name).mkdir(parents=True)
    meta: list[tuple[str, str, str, int, str, bool]] = []
    areas: list[tuple[str, int, str, str, int]] = []
    kelp_pixels = tiles_without_kelp = 0
    cached: tuple[int, _Area] | None = None
    for tile in track(tiles, f"synthesizing {n_tiles} tiles"):
        if cached is None or cached[0] != tile.area:
            cached = (tile.area, _make_area(seed, tile.area, size))
        image, mask = _make_tile(cached[1], tile, seed, size)
        files = {
            "satellite": staging / f"{tile.split}_satellite" / f"{tile.tile_id}_satellite.tif",
            "kelp": staging / f"{tile.split}_kelp" / f"{tile.tile_id}_kelp.tif",
        }
        write_image(files["satellite"], image)
        write_mask(files["kelp"], mask)
        listed = ("satellite", "kelp") if tile.split == "train" else ("satellite",)
        for kind in listed:
            path = files[kind]
            row = (tile.tile_id, path.name, _md5(path), path.stat().st_size, kind)
            meta.append((*row, tile.split == "train"))
        n_kelp = int(mask.sum())
        areas.append((tile.tile_id, tile.area, tile.date.isoformat(), tile.split, n_kelp))
        if tile.split == "train":
            kelp_pixels += n_kelp
            tiles_without_kelp += n_kelp == 0
    with (staging / _AREAS_CSV).open("w", newline="") as f:
        csv.writer(f).writerows([("tile_id", "aoi_id", "date", "split", "kelp_pixels"), *areas])
    for name in (*_DIRS, _AREAS_CSV):
        os.replace(staging / name, root / name)
    staging.rmdir()
    with atomic_path(root / "metadata.csv") as tmp, tmp.open("w", newline="") as f:
        header = ("tile_id", "filename", "md5_hash", "filesize_bytes", "type", "in_train")
        csv.writer(f).writerows([header, *sorted(meta)])
    n_train = sum(tile.split == "train" for tile in tiles)
    return SynthSummary(
        root=root,
        n_train=n_train,
        n_test=n_tiles - n_train,
        n_areas=n_areas,
        seconds=time.perf_counter() - start,
        kelp_fraction=kelp_pixels / (n_train * size * size),
        tiles_without_kelp=tiles_without_kelp,
        seed=seed,
        size=size,
    )
