"""Group tiles of the same area (AOI) from their DEM bands, without any pretrained network.

The Kelp Wanted tiles of one area share their DEM across dates, but each date sees it through
its own window (shifted by up to ~15% of the tile side), the tide turns the intertidal strip
into 0 m "sea" on some dates (land fractions of 0.13-0.22 within one place) and voids
(``-32768``) blank blobs of up to ~30% of a tile. What does not change is the height of the
land both dates see (all bands sit on one 30 m grid). The default method, ``"ncc"``, matches
exactly that, in three steps that keep the work linear in the number of tiles but for one
matrix product:

1. **Candidates.** Each tile is reduced to a ~44 px map of square-rooted block means (voids
   filled from the nearest block), band-passed (Gaussian sigma 1 less sigma 8 blocks: the
   broad ramp from sea to hills is common to every coast). Nine crops of 70% of the side
   (3x3 positions, so that any shift up to 30% keeps one inside the other tile) are compared
   by Pearson correlation with every crop of every other tile at a 2-block stride (pooled
   3x3, one matrix product); each tile keeps its 20 best matches (correlation >= 0.3). Tiles
   with under 2% land, whose maps show nothing, are instead looked up by their exact 2x2
   land-height patches (with >= 2 m relief): a pair sharing at one offset at least 3 patches
   and a tenth of the smaller tile's becomes a candidate, with that shift.
2. **Alignment.** A masked normalised cross-correlation (Padfield's FFT form: only blocks
   valid in both count, at least 20% of the tile overlapping) of ~64 px block means over
   every shift up to ``max_shift`` of the side gives the two best peaks, to a fraction of a
   block.
3. **Verification** at full resolution around each peak: up to 1,500 land pixels of one tile
   are compared with the other tile at the shifted positions, over the pixels that are land
   (> 0 m) and not void in **both**, so that the tide and voids drop pixels without changing
   any. The score is the smaller of two normalised cross-correlations (cosine similarities of
   the centred vectors): of the square-rooted heights and of their one-pixel differences
   (slopes), which distinct terrains on a similar ramp do not share. Two tiles are linked
   when the score is >= ``threshold`` (default 0.97; an overlap of n < 400 pixels needs
   ``1 - (1 - threshold) * n / 400``, as a few pixels can correlate by chance) and, both
   ways, at least 80% of one tile's land seen by the other is land there too or sea but low
   enough to be the tide's (below the lower quartile of the land both show): a sliver that
   matches a few pixels of a large island by chance fails that. Areas are the connected
   components of the links; a pair already connected through others is not verified.

Measured with ``benchmarks/grouping.py`` (60 generator areas x 2-8 dates of 350 px, seeds 1
and 2, cut by :func:`kelp.data.synth.stress_dems`) with shifts up to 20%, tides flooding up
to 40% of the land and voids up to 30%, alone and together: no true area is split over two
groups (or folds) among the tiles with land and no two areas are merged (adjusted Rand index
1.0 over the tiles with land, 0.979-1.0 over all tiles, as tiles that show no land at all
are singletons), where the cosine method below puts 43-54 of the 60 areas on several folds
once dates shift by 20%. Same-area pairs score 1.0 (the heights are identical); no distinct
pair passed in any measured set. On 986 tiles of 350 px with all three stresses it takes
32 s on 2 cores (reading the tiles aside) and leaves two areas split (one over two folds)
whose tiles share at most 3-4 land pixels at any shift: nothing to match. On 2,576 tiles
(500 areas) it takes ~100 s, and of the 7 areas split 5 share at most 10 land pixels; the
other two are a flat 47 px islet (heights 3 and 4 m) and two large tiles that overlap on
163 land pixels only, too few for the candidate search. The crop search is the only part
that grows faster than the tile count (a matrix product of all crops). Memory: each tile's
full-resolution DEM is kept while grouping (int16; ~0.3 MB per 350 px tile with the smaller
maps). On the generator's own datasets (3 px shifts) both methods recover the areas exactly.

The previous method, ``method="cosine"`` (:func:`dem_embedding`, :func:`group_embeddings`),
reduces each DEM to a 32x32 grid of square-rooted block means smoothed by one block and links
tiles whose vectors have cosine similarity >= ``threshold``; it is exact for shifts of a few
pixels, but of the 60 benchmark areas it puts 5 on several folds at 5% shifts, 18 at 10% and
37 at 15% (the NCC method none), and 6-7 with voids up to 30%.

Either way, a component larger than ``max_group_size`` (a chain of near matches) is split
again at a stricter threshold so that one giant group cannot unbalance the folds. A tile with
fewer than 20 land pixels (open sea; an all-zero or all-missing DEM) has no shape to match:
it forms its own area. Such tiles carry no coastline and so no kelp, so splitting them costs
nothing.
"""

from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
from scipy.sparse.csgraph import connected_components

from kelp.data.grouping_alignment import BATCH, align
from kelp.data.grouping_candidates import patch_candidates, search_candidates
from kelp.data.grouping_components import UnionFind, capped, components
from kelp.data.grouping_verification import (
    MIN_POINTS,
    Edge,
    Points,
    land_points,
    required,
    verify_pair,
)
from kelp.data.signatures import MID_SIDE, DemSignature, dem_embedding, dem_signature
from kelp.errors import ConfigError

__all__ = [
    "METHODS",
    "DemSignature",
    "Method",
    "dem_embedding",
    "dem_signature",
    "group_areas",
    "group_embeddings",
]

Method = Literal["ncc", "cosine"]
#: Grouping methods: shift-, tide- and void-tolerant matching, or the older cosine embedding.
METHODS: Final[tuple[Method, ...]] = ("ncc", "cosine")

_MIN_AGREEMENT: Final = 0.8  # least share of one tile's land explained by the other's


# --- grouping by the cosine embedding (method="cosine") -------------------------------------


def group_embeddings(
    embeddings: np.ndarray, threshold: float = 0.97, max_group_size: int | None = None
) -> np.ndarray:
    """Label tiles of the same area by cosine similarity of their DEM embeddings.

    Args:
        embeddings: ``(N, D)`` float, one row per tile (see :func:`dem_embedding`).
        threshold: link two tiles when their cosine similarity is >= this, in (0, 1).
        max_group_size: split larger components at stricter thresholds; ``None`` = no cap.

    Returns:
        ``(N,)`` int64 area labels 0..A-1, numbered in order of first appearance; all-zero
        rows (no shape) are singletons.

    Raises:
        ConfigError: threshold outside (0, 1) or max_group_size < 1.
    """
    _check_arguments(threshold, max_group_size)
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    labels = np.full(len(x), -1, dtype=np.int64)
    shaped = np.flatnonzero(norms > 0)
    groups = _cosine_components(x[shaped] / norms[shaped, None], threshold, max_group_size)
    for label, members in enumerate(groups):
        labels[shaped[members]] = label
    return _renumber(labels)


def _cosine_components(unit: np.ndarray, threshold: float, cap: int | None) -> list[np.ndarray]:
    if len(unit) == 0:
        return []
    # For unit vectors |a - b|^2 = 2 - 2 cos(a, b): a radius query finds the links sparsely.
    radius = float(np.sqrt(max(2.0 - 2.0 * threshold, 0.0)))
    from sklearn.neighbors import radius_neighbors_graph  # seconds to import: only here

    graph = radius_neighbors_graph(unit, radius, mode="connectivity", include_self=False)
    n, labels = connected_components(graph, directed=False)
    groups = [np.flatnonzero(labels == k) for k in range(n)]
    return capped(groups, threshold, cap, lambda m, t: _cosine_components(unit[m], t, cap))


# --- shift-, tide- and void-tolerant matching (method="ncc") --------------------------------


def group_areas(
    tiles: Sequence[np.ndarray] | Sequence[DemSignature],
    threshold: float = 0.97,
    max_group_size: int | None = None,
    *,
    method: Method = "ncc",
    max_shift: float = 0.25,
) -> np.ndarray:
    """Label tiles of the same area from their DEMs.

    Args:
        tiles: one ``(H, W)`` integer DEM (metres, ``-32768`` = void) or
            :func:`dem_signature` per tile. Tiles of different shapes are never linked.
        threshold: in (0, 1). ``"ncc"``: least normalised cross-correlation of heights and
            slopes over the land both tiles show at their best alignment (see the module
            docstring); ``"cosine"``: least cosine similarity of :func:`dem_embedding`.
        max_group_size: split larger components at stricter thresholds; ``None`` = no cap.
        method: ``"ncc"`` (shift-, tide- and void-tolerant) or ``"cosine"`` (the old one).
        max_shift: ``"ncc"`` only: largest shift searched between two dates, as a share of
            the tile side, in (0, 0.5].

    Returns:
        ``(N,)`` int64 area labels 0..A-1, numbered in order of first appearance; tiles with
        no shape (fewer than 20 land pixels) are singletons.

    Raises:
        ConfigError: threshold outside (0, 1), max_group_size < 1, unknown method, or
            max_shift outside (0, 0.5].
        ValueError: a DEM that is not 2-D or under 8 px a side.
    """
    _check_arguments(threshold, max_group_size)
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < max_shift <= 0.5:
        raise ConfigError(f"max_shift must be in (0, 0.5], got {max_shift}")
    sigs = [t if isinstance(t, DemSignature) else dem_signature(t) for t in tiles]
    if not sigs:
        return np.zeros(0, dtype=np.int64)
    if method == "cosine":
        return group_embeddings(np.stack([s.embedding for s in sigs]), threshold, max_group_size)
    labels = np.full(len(sigs), -1, dtype=np.int64)
    next_label = 0
    shapes = {s.heights.shape for s in sigs}
    for shape in sorted(shapes):
        idx = np.array([i for i, s in enumerate(sigs) if s.heights.shape == shape and s.has_shape])
        if len(idx) == 0:
            continue
        edges = _match([sigs[i] for i in idx], max_shift, threshold)
        for members in components(len(idx), edges, threshold, max_group_size):
            labels[idx[members]] = next_label
            next_label += 1
    return _renumber(labels)


def _check_arguments(threshold: float, max_group_size: int | None) -> None:
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold}")
    if max_group_size is not None and max_group_size < 1:
        raise ConfigError(f"max_group_size must be >= 1, got {max_group_size}")


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Unlabelled tiles (-1) become singletons; labels follow the order of first appearance."""
    labels = labels.copy()
    next_label = int(labels.max()) + 1 if len(labels) else 0
    for i in np.flatnonzero(labels < 0):
        labels[i] = next_label
        next_label += 1
    _, first = np.unique(labels, return_index=True)
    renumber = np.empty(next_label, dtype=np.int64)
    renumber[labels[np.sort(first)]] = np.arange(len(first))
    return renumber[labels]


def _match(sigs: list[DemSignature], max_shift: float, threshold: float) -> list[Edge]:
    """Verified pairs among same-shape tiles with shape (indices into ``sigs``).

    Pairs whose tiles are already linked through others are not verified again: a spanning
    forest of links gives the same areas at ``threshold``.
    """
    pairs = sorted(search_candidates(sigs, max_shift))
    factor = max(1, round(min(sigs[0].heights.shape) / MID_SIDE))
    points: dict[int, Points] = {}
    linked = UnionFind(len(sigs))
    edges: list[Edge] = []

    def verify(i: int, j: int, starts: list[tuple[int, int]], radius: int) -> Edge:
        for t in (i, j):
            if t not in points:
                points[t] = land_points(sigs[t].heights)
        a, b = sigs[i].heights, sigs[j].heights
        edge = verify_pair(a, b, points[i], points[j], (i, j), starts, radius, threshold)
        if edge.points >= MIN_POINTS and edge.agreement >= _MIN_AGREEMENT:
            edges.append(edge)
            if edge.score >= required(threshold, np.array([edge.points]))[0]:
                linked.union(i, j)
        return edge

    for start in range(0, len(pairs), BATCH):
        todo = [(i, j) for i, j in pairs[start : start + BATCH] if not linked.same(i, j)]
        for (i, j), peaks in align(sigs, todo, max_shift).items():
            if peaks and not linked.same(i, j):
                starts = [(round(dy * factor), round(dx * factor)) for dy, dx, _ in peaks]
                # Tides and voids can move a peak by a block or so: search a block around.
                verify(i, j, starts, factor + 1)
    for (i, j), shift in sorted(patch_candidates(sigs).items()):
        if not linked.same(i, j):
            verify(i, j, [shift], 1)
    return edges
