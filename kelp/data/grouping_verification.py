"""Verification of aligned pairs for area grouping (step 3 of :mod:`kelp.data.grouping`):
normalised cross-correlation of heights and slopes at full resolution over the land both
tiles show, and the agreement of their land and sea.
"""

from dataclasses import dataclass
from typing import Final

import numpy as np

from kelp.data.signatures import VOID

__all__ = ["MIN_POINTS", "Edge", "Points", "land_points", "required", "verify_pair"]

_POINTS: Final = 1500  # land pixels compared at full resolution
_POINTS_FIRST: Final = 300  # ... when scanning all shifts around a peak
_FIRST_MIN: Final = 0.6  # least height NCC of that scan worth a closer look (true: >= 0.84)
MIN_POINTS: Final = 10  # least land pixels both tiles must show to compare them
_FULL_POINTS: Final = 400  # smaller overlaps need a closer match


@dataclass(frozen=True)
class Edge:
    """A verified pair of tiles (indices into the tiles of one shape)."""

    i: int
    j: int
    score: float  # min(NCC of heights, NCC of slopes)
    points: int  # land pixels both showed
    agreement: float  # least share of one tile's land explained by the other (land or tide)


def required(threshold: float, points: np.ndarray) -> np.ndarray:
    """Least score linking two tiles that both show ``points`` land pixels."""
    return 1.0 - (1.0 - threshold) * np.minimum(1.0, points / _FULL_POINTS)


@dataclass(frozen=True)
class Points:
    """Up to ``_POINTS`` land pixels of a tile, evenly spread, and their square-rooted heights."""

    ys: np.ndarray  # (P,) int32
    xs: np.ndarray  # (P,) int32
    root: np.ndarray  # (P,) float64
    slopes: np.ndarray  # (2, P) float32 differences to the pixel below / right, NaN off land


def land_points(heights: np.ndarray) -> Points:
    """The points of a tile, kept for all its pairs (~30 kB a tile)."""
    ys, xs = np.nonzero(heights > 0)
    if len(ys) > _POINTS:
        keep = np.linspace(0, len(ys) - 1, _POINTS).astype(int)
        ys, xs = ys[keep], xs[keep]
    ys, xs = ys.astype(np.int32), xs.astype(np.int32)
    root = np.sqrt(heights[ys, xs].astype(np.float64))
    slopes = _slopes(heights, ys, xs, np.zeros(2, dtype=np.int64), root)
    return Points(ys, xs, root, slopes.astype(np.float32))


def _slopes(
    b: np.ndarray, ys: np.ndarray, xs: np.ndarray, shift: np.ndarray, here: np.ndarray
) -> np.ndarray:
    """``(2, P)`` differences of square-rooted heights of ``b`` from the shifted points (whose
    values are ``here``) to the pixel below and to the right; NaN where either is not land."""
    steps = np.array([[1, 0], [0, 1]])
    return np.stack([_sample(b, ys + dy, xs + dx, shift[None, :])[0] for dy, dx in steps]) - here


def verify_pair(
    a: np.ndarray,
    b: np.ndarray,
    pa: Points,
    pb: Points,
    pair: tuple[int, int],
    starts: list[tuple[int, int]],
    radius: int,
    threshold: float,
) -> Edge:
    """Score a pair of tiles (heights ``a``, ``b``) at full resolution near ``starts``.

    The land points ``pa`` of ``a`` are compared with ``b`` at the shifts within ``radius``
    px of each start (every other shift beyond 3 px, on ``_POINTS_FIRST`` of the points),
    then around the best three at every shift on all points; only pixels that are land and
    not void in both count. A pair whose first scan stays below ``_FIRST_MIN`` stops there.

    Returns:
        The edge at the best shift: min(NCC of square-rooted heights, NCC of slopes; the
        heights alone where they already fall short of ``threshold``), the points compared
        and the land agreement there.
    """
    step = 2 if radius > 3 else 1
    steps = np.arange(-radius, radius + 1, step)
    shifts = _unique_shifts(np.array(starts)[:, None, :] + _square(steps)[None])
    if step > 1 or len(shifts) > 27:
        few = slice(None, None, max(1, len(pa.ys) // _POINTS_FIRST))
        r, n = _ncc(pa.root[few], _sample(b, pa.ys[few], pa.xs[few], shifts))
        r[n < MIN_POINTS * len(pa.root[few]) / len(pa.root)] = -np.inf
        if not r.max(initial=-np.inf) >= _FIRST_MIN:
            return Edge(*pair, -1.0, 0, 0.0)  # nothing near: not worth the full comparison
        best = shifts[np.argsort(-r, kind="stable")[:3]]
        shifts = _unique_shifts(best[:, None, :] + _square(np.arange(-1, 2))[None])
    there = _sample(b, pa.ys, pa.xs, shifts)
    r, n = _ncc(pa.root, there)
    r[n < MIN_POINTS] = -np.inf
    edge = Edge(*pair, -1.0, 0, 0.0)
    for k in np.argsort(-r, kind="stable")[:2]:
        if not np.isfinite(r[k]):
            break
        if r[k] < required(threshold, n[k : k + 1])[0]:
            score = float(r[k])  # fails already: the slopes cannot save it
        else:
            slopes = _slopes(b, pa.ys, pa.xs, shifts[k], there[k])
            score = min(float(r[k]), _slope_ncc(pa.slopes, slopes), 1.0)
        if score > edge.score:
            agreement = _land_agreement(a, b, pa, pb, shifts[k])
            edge = Edge(*pair, score, int(n[k]), agreement)
    return edge


def _square(steps: np.ndarray) -> np.ndarray:
    """``(len(steps)**2, 2)`` int64 grid of ``(dy, dx)`` offsets."""
    return np.stack(np.meshgrid(steps, steps, indexing="ij"), axis=-1).reshape(-1, 2)


def _unique_shifts(shifts: np.ndarray) -> np.ndarray:
    flat = shifts.reshape(-1, 2).astype(np.int64)
    # One integer per shift: much faster than np.unique(axis=0).
    keys = np.unique((flat[:, 0] + (1 << 20)) << 21 | (flat[:, 1] + (1 << 20)))
    return np.stack([(keys >> 21) - (1 << 20), (keys & ((1 << 21) - 1)) - (1 << 20)], axis=1)


def _lookup(b: np.ndarray, ys: np.ndarray, xs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``(len(shifts), len(ys))`` int heights of ``b`` at the shifted points, -1 outside."""
    h, w = b.shape
    y = ys[None, :] + shifts[:, :1]
    x = xs[None, :] + shifts[:, 1:]
    inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    return np.where(inside, b.ravel()[np.where(inside, y * w + x, 0)], VOID)


def _sample(b: np.ndarray, ys: np.ndarray, xs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``(len(shifts), len(ys))`` float64 square-rooted heights of ``b`` at the shifted points;
    NaN where the point falls outside, on sea or on a void."""
    values = _lookup(b, ys, xs, shifts)
    land = values > 0
    return np.where(land, np.sqrt(np.maximum(values, 0).astype(np.float64)), np.nan)


def _land_agreement(
    a: np.ndarray, b: np.ndarray, pa: Points, pb: Points, shift: np.ndarray
) -> float:
    """How well each tile's land is explained by the other at ``shift``: the smaller, over
    the two ways, of the share of one tile's land points seen by the other (in its frame, not
    void) that are land there too, or sea there but low enough to be flooded by the tide.

    The tide floods land by height: where one date's land is the other's sea it is lower than
    most land both still show (below its lower quartile). A sliver of land that matches a
    few pixels of a large island by chance falls on that island's sea at any height, or the
    island on the sliver's sea.
    """
    shares = []
    for points, other, s in ((pa, b, shift), (pb, a, -shift)):
        values = _lookup(other, points.ys, points.xs, s[None, :])[0]
        seen, land = values >= 0, values > 0
        if not land.any():
            shares.append(0.0)
            continue
        level = np.quantile(points.root[land], 0.25)
        flooded = seen & ~land & (points.root <= level)
        shares.append(float((land.sum() + flooded.sum()) / seen.sum()))
    return min(shares)


def _ncc(here: np.ndarray, there: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NCC of ``here`` (P,) against each row of ``there`` (S, P) over its non-NaN entries.

    Returns:
        ``(S,)`` NCC (``-inf`` where either side has no variance) and ``(S,)`` counts.
    """
    ok = ~np.isnan(there)
    n = ok.sum(axis=1)
    # In float64 whatever the inputs: near-identical tiles must score within 1e-6 of 1.
    x = np.where(ok, here[None, :].astype(np.float64), 0.0)
    y = np.where(ok, there.astype(np.float64), 0.0)
    nn = np.maximum(n, 1)
    sx, sy = x.sum(axis=1), y.sum(axis=1)
    cov = (x * y).sum(axis=1) - sx * sy / nn
    vx = (x * x).sum(axis=1) - sx**2 / nn
    vy = (y * y).sum(axis=1) - sy**2 / nn
    flat = (vx <= 1e-9 * nn) | (vy <= 1e-9 * nn)
    r = np.where(flat, -np.inf, cov / np.sqrt(np.maximum(vx * vy, 1e-300)))
    return r, n


def _slope_ncc(here: np.ndarray, there: np.ndarray) -> float:
    """NCC of two tiles' ``(2, P)`` slopes at the same points, where both are defined."""
    ok = ~(np.isnan(here) | np.isnan(there))
    if ok.sum() < MIN_POINTS // 2:
        return -1.0
    r, _ = _ncc(here[ok], there[ok][None, :])
    return float(r[0]) if np.isfinite(r[0]) else -1.0
