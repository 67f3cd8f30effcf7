"""NaN-aware neighbourhood filters (the ilastik filter bank, minus the tensor eigenvalues).

Smoothing is a normalised convolution: ``G(x) = g * (x v) / g * v`` with ``v`` the mask of
valid (non-NaN) pixels, so missing stripes and masked land neither darken nor brighten their
neighbourhood and small gaps are filled from their surroundings; where less than 5% of the
kernel's weight is valid the result is NaN. The other filters derive from the smoothed image:

- ``gaussian``: ``G_sigma(x)``
- ``gradient``: gradient magnitude of ``G_sigma(x)`` (central differences)
- ``log``: Laplacian of ``G_sigma(x)`` (5-point stencil) times ``sigma**2`` (scale-normalised)
- ``dog``: ``G_sigma(x) - G_{0.66 sigma}(x)`` (ilastik's ratio)
"""

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from kelp.errors import ConfigError
from kelp.features.config import FilterKind

__all__ = ["filter_bank", "filter_names", "nan_gaussian"]

_MIN_WEIGHT = 0.05
_DOG_RATIO = 0.66


def nan_gaussian(x: np.ndarray, sigma: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing that ignores NaN.

    Args:
        x: ``(H, W) float32`` with NaN for missing.
        sigma: scale in pixels.
        weight: ``g * v`` for ``x``'s valid mask, when the caller already has it.

    Returns:
        ``(H, W) float32``; NaN where the valid neighbourhood is too thin.
    """
    valid = ~np.isnan(x)
    if valid.all():
        return ndimage.gaussian_filter(x, sigma, mode="reflect")
    if weight is None:
        weight = _weight(valid, sigma)
    return _normalised(np.where(valid, x, np.float32(0)), sigma, weight)


def _weight(valid: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(valid.astype(np.float32), sigma, mode="reflect")


def _normalised(filled: np.ndarray, sigma: float, weight: np.ndarray) -> np.ndarray:
    """``g * (x v) / g * v`` from ``filled = x v`` and ``weight = g * v``."""
    smoothed = ndimage.gaussian_filter(filled, sigma, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = smoothed / weight
    out[weight < _MIN_WEIGHT] = np.nan
    return out


def filter_names(channel: str, sigmas: Sequence[float], kinds: Sequence[FilterKind]) -> list[str]:
    """Names of the filtered channels, e.g. ``nir_gaussian_s2``, in computation order."""
    return [f"{channel}_{kind}_s{sigma:g}" for sigma in sigmas for kind in kinds]


def filter_bank(
    x: np.ndarray,
    sigmas: Sequence[float],
    kinds: Sequence[FilterKind],
    weights: dict[float, np.ndarray] | None = None,
    pixels: np.ndarray | None = None,
) -> np.ndarray:
    """Apply every filter kind at every scale to one channel.

    Args:
        x: ``(H, W) float32`` with NaN for missing.
        sigmas: scales in pixels; each must not exceed the tile's shorter side.
        kinds: filters to compute (see the module docstring).
        weights: ``g_sigma * v`` by sigma for ``x``'s valid mask ``v``, filled in as they
            are computed: pass the same dict for channels with the same valid mask (bands
            missing at the same pixels) and each is computed once.
        pixels: flat pixel indices: return the filtered values there only (each filter
            is still computed on the whole tile).

    Returns:
        ``(len(sigmas) * len(kinds), H, W) float32`` in :func:`filter_names` order;
        ``(len(sigmas) * len(kinds), N) float32`` at ``N`` pixels.

    Raises:
        ConfigError: a sigma larger than the tile.
    """
    side = min(x.shape)
    too_big = [s for s in sigmas if s > side]
    if too_big:
        raise ConfigError(
            f"filter sigma(s) {too_big} px larger than the {x.shape[0]}x{x.shape[1]} tile: "
            "lower filters.sigmas"
        )
    shape = x.shape if pixels is None else pixels.shape
    out = np.empty((len(sigmas) * len(kinds), *shape), np.float32)
    valid = ~np.isnan(x)
    complete = bool(valid.all())
    filled = x if complete else np.where(valid, x, np.float32(0))
    weights = {} if weights is None else weights

    def smooth(s: float) -> np.ndarray:
        if complete:
            return ndimage.gaussian_filter(x, s, mode="reflect")
        if s not in weights:
            weights[s] = _weight(valid, s)
        return _normalised(filled, s, weights[s])

    def at(values: np.ndarray) -> np.ndarray:
        return values if pixels is None else values.reshape(-1)[pixels]

    for i, sigma in enumerate(sigmas):
        smoothed = smooth(sigma)
        for j, kind in enumerate(kinds):
            k = i * len(kinds) + j
            if kind == "gaussian":
                out[k] = at(smoothed)
            elif kind == "gradient":
                gy, gx = np.gradient(smoothed) if pixels is None else _gradient(smoothed, pixels)
                out[k] = np.hypot(gy, gx)
            elif kind == "log":
                lap = ndimage.laplace(smoothed) if pixels is None else _laplace(smoothed, pixels)
                out[k] = lap * np.float32(sigma**2)
            else:
                out[k] = at(smoothed) - at(smooth(_DOG_RATIO * sigma))
    return out


# Gradient and Laplacian at some pixels only: each needs just the pixel's 4 neighbours, and a
# sampled build keeps about 1 pixel in 12. They repeat the whole-tile functions' arithmetic
# step for step, so the values are theirs bit for bit (tests/features/test_channels.py and
# test_stack.py check it).


def _neighbours(
    x: np.ndarray, pixels: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per axis: the rows (cols) before, at and after each pixel, clamped to the tile."""
    h, w = x.shape
    r, c = np.divmod(pixels, w)
    rows = (np.maximum(r - 1, 0), r, np.minimum(r + 1, h - 1))
    cols = (np.maximum(c - 1, 0), c, np.minimum(c + 1, w - 1))
    return rows, cols


def _gradient(x: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.gradient(x)`` at ``pixels``: central differences inside, one-sided at edges."""
    (r0, r, r1), (c0, c, c1) = _neighbours(x, pixels)
    one, two = np.float32(1), np.float32(2)
    dy = (x[r1, c] - x[r0, c]) / np.where((r1 - r0) == 2, two, one)
    dx = (x[r, c1] - x[r, c0]) / np.where((c1 - c0) == 2, two, one)
    return dy, dx


def _laplace(x: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``ndimage.laplace(x)`` (mode "reflect") at ``pixels``: per axis, in float64 as
    ``correlate1d`` computes it (centre * -2, plus the two neighbours' sum), stored in
    ``x``'s float32, then the two axes added in float32."""
    (r0, r, r1), (c0, c, c1) = _neighbours(x, pixels)
    centre = x[r, c].astype(np.float64) * -2.0
    down = centre + (x[r0, c].astype(np.float64) + x[r1, c].astype(np.float64))
    across = centre + (x[r, c0].astype(np.float64) + x[r, c1].astype(np.float64))
    return down.astype(np.float32) + across.astype(np.float32)
