"""Alignment of candidate pairs for area grouping (step 2 of :mod:`kelp.data.grouping`):
masked normalised cross-correlation of the alignment maps over every shift, in FFT batches.
"""

from typing import Final

import numpy as np
from scipy import fft

from kelp.data.signatures import DemSignature

__all__ = ["BATCH", "align"]

_MIN_OVERLAP: Final = 0.2  # share of the alignment map valid in both at a shift
_PEAKS: Final = 2  # alignment peaks verified per pair
BATCH: Final = 128  # pairs per FFT batch


def align(
    sigs: list[DemSignature], pairs: list[tuple[int, int]], max_shift: float
) -> dict[tuple[int, int], list[tuple[float, float, float]]]:
    """The best shifts (in alignment-map px) of each pair by masked NCC over all shifts.

    A shift ``(dy, dx)`` means that tile ``j`` at ``(y + dy, x + dx)`` shows what tile ``i``
    shows at ``(y, x)``. Masked NCC (Padfield 2012): six FFT cross-correlations give, for every
    shift at once, the count, sums and sums of squares over the blocks valid in both.

    Returns:
        Per pair up to ``_PEAKS`` ``(dy, dx, ncc)``, best first, shifts to a fraction of a
        pixel; none where no shift overlaps enough.
    """
    out: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
    if not pairs:
        return out
    h, w = sigs[0].mid.shape
    r0, r1 = max(1, int(np.ceil(max_shift * h))), max(1, int(np.ceil(max_shift * w)))
    size = (h + r0, w + r1)  # zero padding: shifts up to r never wrap around
    rows = np.r_[0 : r0 + 1, size[0] - r0 : size[0]]
    cols = np.r_[0 : r1 + 1, size[1] - r1 : size[1]]
    lag0 = np.r_[0 : r0 + 1, -r0:0]
    lag1 = np.r_[0 : r1 + 1, -r1:0]
    for start in range(0, len(pairs), BATCH):
        batch = np.array(pairs[start : start + BATCH])
        tiles = np.unique(batch)
        where = {int(t): k for k, t in enumerate(tiles)}
        valid = np.stack([sigs[t].mid_valid for t in tiles]).astype(np.float32)
        # NCC ignores each tile's offset and scale: standardised values keep float32 exact.
        values = np.stack([_standardised(sigs[t].mid, sigs[t].mid_valid) for t in tiles])
        spectra = [fft.rfft2(a, size) for a in (values, values * values, valid)]
        a = np.array([where[int(i)] for i in batch[:, 0]])
        b = np.array([where[int(j)] for j in batch[:, 1]])
        v, v2, m = spectra

        def xcorr(p: np.ndarray, q: np.ndarray) -> np.ndarray:
            return fft.irfft2(np.conj(p) * q, size)[:, rows][:, :, cols]

        count = xcorr(m[a], m[b])
        sum_a, sum_b = xcorr(v[a], m[b]), xcorr(m[a], v[b])
        var_a = xcorr(v2[a], m[b]) - sum_a**2 / np.maximum(count, 1)
        var_b = xcorr(m[a], v2[b]) - sum_b**2 / np.maximum(count, 1)
        cov = xcorr(v[a], v[b]) - sum_a * sum_b / np.maximum(count, 1)
        enough = (count >= _MIN_OVERLAP * h * w) & (var_a > 1e-4 * count) & (var_b > 1e-4 * count)
        ncc = np.where(enough, cov / np.sqrt(np.maximum(var_a * var_b, 1e-12)), -np.inf)
        for (i, j), scores in zip(batch.tolist(), ncc, strict=True):
            out[i, j] = _peaks(scores, (lag0, lag1), _PEAKS)
    return out


def _standardised(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``values`` less their mean over ``valid``, over their std there (0 where not valid)."""
    if not valid.any():
        return np.zeros(values.shape, np.float32)
    inside = values[valid].astype(np.float64)
    scaled = (values - inside.mean()) / max(float(inside.std()), 1e-6)
    return np.where(valid, scaled, 0.0).astype(np.float32)


def _peaks(
    scores: np.ndarray, lags: tuple[np.ndarray, np.ndarray], count: int
) -> list[tuple[float, float, float]]:
    """Up to ``count`` local maxima of a score map over lags, best first.

    Args:
        scores: ``(Y, X)`` scores; axis ``k`` holds the lags ``lags[k]`` (0, 1, ..., -1).
        lags: the lag of each row and column.
        count: peaks wanted.

    Returns:
        ``(dy, dx, score)`` per peak, the lags refined to a fraction of a pixel by a parabola
        through the peak and its neighbours along each axis.
    """
    scores = scores.copy()
    where = [{int(lag): k for k, lag in enumerate(axis)} for axis in lags]
    found = []
    for _ in range(count):
        y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
        best = float(scores[y, x])
        if not np.isfinite(best):
            break
        refined = []
        for axis in (0, 1):
            lag = int(lags[axis][(y, x)[axis]])
            sides = []
            for step in (-1, 1):
                k = where[axis].get(lag + step)
                idx = (k, x) if axis == 0 else (y, k)
                sides.append(float(scores[idx]) if k is not None else -np.inf)
            curve = sides[0] - 2 * best + sides[1]
            ok = np.isfinite(sides[0]) and np.isfinite(sides[1]) and curve < 0
            refined.append(
                lag + (np.clip((sides[0] - sides[1]) / (2 * curve), -0.5, 0.5) if ok else 0)
            )
        found.append((float(refined[0]), float(refined[1]), best))
        # The lag axes wrap (0, 1, ..., -1), so suppress the peak's neighbourhood modulo.
        near_y = np.arange(y - 2, y + 3) % scores.shape[0]
        near_x = np.arange(x - 2, x + 3) % scores.shape[1]
        scores[np.ix_(near_y, near_x)] = -np.inf
    return found
