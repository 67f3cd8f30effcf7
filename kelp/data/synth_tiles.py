"""One date of a synthetic area: spectra by linear mixing, clouds, haze, sensor noise, SLC-off
gaps, DEM voids and misregistration, and noisy labels.

See :mod:`kelp.data.synth` for the model and its reflectances, and
:mod:`kelp.data.synth_hard` for what the ``hard`` preset adds.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from kelp.bands import MISSING
from kelp.data.synth_areas import REF_SIZE, Area, fractal_noise, seeded_rng, shift, smooth_noise
from kelp.data.synth_hard import HardArea, HardDate

__all__ = ["TilePlan", "make_tile"]

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
_SLC_FAILURE: Final = dt.date(2003, 5, 31)


@dataclass(frozen=True)
class TilePlan:
    """One tile to generate: its stream index, id, area, date and split."""

    index: int  # seeds the tile's generator
    tile_id: str
    area: int
    date: dt.date
    split: Literal["train", "test"]


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
        mask = shift(mask, int(dy), int(dx))
    return mask


def make_tile(
    area: Area, tile: TilePlan, seed: int, size: int, hard: HardArea | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image (7, H, W) int16, mask (H, W) bool)`` for one date of an area.

    With ``hard`` (the hard preset), the default's draws come in the same order and the
    date's :class:`HardDate` adds its own from a separate stream.
    """
    rng = seeded_rng(seed, 1, tile.index)
    s = size / REF_SIZE
    oy, ox = rng.integers(0, 2 * area.margin + 1, 2)
    date = None if hard is None else HardDate.draw(seed, tile.index, hard, size, (oy, ox))
    win = np.s_[oy : oy + size, ox : ox + size]
    land = area.land[win]

    # Kelp: persistent beds, extent of the date (season, storms), canopy thinned by tide.
    score = area.bed[win] + 0.35 * smooth_noise(rng, size, 10) - rng.uniform(-0.2, 0.3)
    reach = area.kelp_reach * rng.uniform(0.6, 1.2)
    present = rng.random() > (0.15 if date is None else 0.03)
    truth = present & (score > 0) & (area.coast_dist[win] <= reach) & (land < 0.5)
    density = np.clip(0.15 + score, 0.15, 1.0) * rng.uniform(0.4, 1.0, (size, size))
    kelp = np.where(truth, density * rng.uniform(0.5, 1.0), 0).astype(np.float32)
    kelp = np.minimum(kelp, 1 - land)
    if date is not None:
        kelp = date.canopy(kelp, truth, land)
    veg = land * np.clip(area.veg[win] + rng.uniform(-0.25, 0.15), 0, 1)
    abundance = np.stack([1 - land - kelp, kelp, veg, land - veg]).astype(np.float32)
    surface = _SURFACE if date is None else date.surface(_SURFACE)
    refl = np.tensordot(surface, abundance, axes=1)
    refl += rng.uniform(0, 1.5) * (area.near_shore[win] * abundance[0]) * _TURBID
    if date is not None:
        date.confound(refl, abundance, area.coast_dist[win], _SURFACE[:, 0])

    qa = np.zeros((size, size), bool)
    if rng.random() < 0.45 or (date is not None and date.overcast):
        field = fractal_noise(rng, size, (3, 6, 12, 24), order=1)
        cover = rng.uniform(0.02, 0.9)
        edge = rng.uniform(0.2, 0.6)
        if date is not None:
            cover, edge = (date.cover if date.overcast else cover), edge * date.cloud_edge
        opacity = np.clip((field - np.quantile(field[::4, ::4], 1 - cover)) / edge, 0, 1)
        offset = rng.integers(5, 25, 2) * rng.choice([-1, 1], 2) * s
        refl *= 1 - 0.6 * shift(opacity, *np.rint(offset).astype(int).tolist())
        texture = _CLOUD * (1 + 0.1 * np.clip(field, -2, 2))
        refl += opacity * (texture - refl)
        # Thin edges brighten the scene but stay unflagged.
        qa = opacity > (0.5 if date is None else date.qa_threshold)
    if rng.random() < 0.3:
        thickness = np.maximum(0.6 + 0.3 * fractal_noise(rng, size, (2, 4), order=3), 0)
        refl += rng.uniform(0, 0.8) * thickness * _HAZE
    if date is not None:
        date.haze(refl, _HAZE)
    refl *= rng.uniform(0.96, 1.04, 5).astype(np.float32)[:, None, None]

    # Triangular sensor noise (sum of two uniforms, unit variance): twice as fast as normal.
    # In-place arithmetic: this (5, H, W) conversion is the hottest part of the generator.
    noise = rng.random(refl.shape, dtype=np.float32)
    noise += rng.random(refl.shape, dtype=np.float32)
    noise -= 1
    noise *= np.sqrt(6) * rng.uniform(55, 145)
    scale, zero = (_SCALE, _OFFSET) if date is None else date.calibration(_SCALE, _OFFSET)
    refl *= scale
    refl += noise + zero
    spectral = np.clip(np.rint(refl, out=refl), -32767, 32767, out=refl).astype(np.int16)
    if tile.date > _SLC_FAILURE and rng.random() < 0.5:
        spectral[:, _slc_gaps(rng, size)] = MISSING

    if rng.random() < 0.05:  # DEM and spectra misregistered, as in the real tiles
        oy, ox = np.clip(np.array([oy, ox]) + rng.choice([-2, -1, 1, 2], 2), 0, 2 * area.margin)
    dem = area.dem[oy : oy + size, ox : ox + size].copy()
    if rng.random() < 0.12 and (date is None or date.voids):
        dem[smooth_noise(rng, size, 6) > rng.uniform(1.2, 2.0)] = MISSING
    if date is not None:
        dem = date.dem(dem)
    image = np.concatenate([spectral, qa[None].astype(np.int16), dem[None]])
    return image, _label_noise(rng, truth if date is None else date.annotate(truth))
