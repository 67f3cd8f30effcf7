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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from scipy import fft, ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import radius_neighbors_graph

from kelp.data.bands import MISSING

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

_VOID: Final = -1  # void pixels in DemSignature.heights
_MIN_SIDE: Final = 8  # px: smaller tiles cannot be matched
_MIN_LAND: Final = 20  # px: tiles with less land have no shape (open sea)
_SMALL_LAND: Final = 0.02  # share of the tile: below it candidates also come from patches
_SEARCH_SIDE: Final = 44  # px of the candidate-search map
_MID_SIDE: Final = 64  # px of the alignment map
_QUERY_STEPS: Final = 3  # query crops per axis
_STRIDE: Final = 2  # search-map px between the crops a query is compared with
_POOL: Final = 3  # search crops are averaged over 3x3 px before comparing
_NEIGHBOURS: Final = 20  # candidates kept per tile
_CANDIDATE_MIN: Final = 0.3  # least crop correlation of a candidate
_MIN_OVERLAP: Final = 0.2  # share of the alignment map valid in both at a shift
_PEAKS: Final = 2  # alignment peaks verified per pair
_POINTS: Final = 1500  # land pixels compared at full resolution
_POINTS_FIRST: Final = 300  # ... when scanning all shifts around a peak
_FIRST_MIN: Final = 0.6  # least height NCC of that scan worth a closer look (true: >= 0.84)
_MIN_POINTS: Final = 10  # least land pixels both tiles must show to compare them
_FULL_POINTS: Final = 400  # smaller overlaps need a closer match
_MIN_AGREEMENT: Final = 0.8  # least share of one tile's land explained by the other's
_PATCH_HITS: Final = 3  # least exact 2x2 patches at one offset that make a candidate
_PATCH_SHARE: Final = 0.1  # ... and least share of the smaller tile's patches
_PATCH_COMMON: Final = 32  # patches found this often in small tiles are too common to count
_PATCH_RELIEF: Final = 2  # m: least height range of a patch that counts
_BUCKET_BITS: Final = 24  # size of the patch look-up table (2 MB)
_BATCH: Final = 128  # pairs per FFT batch


# --- the cosine embedding (method="cosine") -------------------------------------------------


def dem_embedding(dem: np.ndarray, grid: int = 32, smooth: float = 1.0) -> np.ndarray:
    """Reduce a DEM band to a ``(grid * grid,)`` float32 vector (the ``"cosine"`` method).

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
        ValueError: threshold outside (0, 1) or max_group_size < 1.
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
    graph = radius_neighbors_graph(unit, radius, mode="connectivity", include_self=False)
    n, labels = connected_components(graph, directed=False)
    groups = [np.flatnonzero(labels == k) for k in range(n)]
    return _capped(groups, threshold, cap, lambda m, t: _cosine_components(unit[m], t, cap))


def _capped(
    groups: list[np.ndarray],
    threshold: float,
    cap: int | None,
    regroup: Callable[[np.ndarray, float], list[np.ndarray]],
) -> list[np.ndarray]:
    """Groups of at most ``cap`` tiles: a larger one is regrouped at a stricter threshold
    (``regroup(members, stricter)`` gives index arrays into ``members``), finally cut into
    chunks of ``cap``."""
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
        out.extend(members[sub] for sub in regroup(members, stricter))
    return out


# --- shift-, tide- and void-tolerant matching (method="ncc") --------------------------------


@dataclass(frozen=True, eq=False)
class DemSignature:
    """What grouping keeps of one tile's DEM (see :func:`dem_signature`).

    Attributes:
        heights: ``(H, W)`` int16 metres: > 0 land, 0 sea (and bathymetry), -1 void.
        search: ``(S, S')`` float32 band-passed square-rooted block means, voids filled
            (candidate search, ~44 px a side).
        mid: ``(M, M')`` float32 block-mean heights in metres, 0 where not valid (alignment,
            ~64 px a side).
        mid_valid: ``(M, M')`` bool, blocks at least half valid.
        embedding: ``(1024,)`` float32 :func:`dem_embedding` (the ``"cosine"`` method).
        land: land pixels (> 0 m, not void).
    """

    heights: np.ndarray
    search: np.ndarray
    mid: np.ndarray
    mid_valid: np.ndarray
    embedding: np.ndarray
    land: int

    @property
    def has_shape(self) -> bool:
        """Enough land to match (fewer than 20 pixels = open sea, its own area)."""
        return self.land >= _MIN_LAND


def dem_signature(dem: np.ndarray) -> DemSignature:
    """Reduce a tile's DEM band to what :func:`group_areas` compares.

    Args:
        dem: ``(H, W)`` integer DEM in metres, ``-32768`` = void, ``H, W >= 8``.

    Returns:
        The signature (about 2 bytes per pixel: the full-resolution heights are kept for the
        verification).

    Raises:
        ValueError: ``dem`` is not 2-D or smaller than 8 px a side.
    """
    dem = np.asarray(dem)
    if dem.ndim != 2 or min(dem.shape) < _MIN_SIDE:
        raise ValueError(f"a DEM must be 2-D and at least {_MIN_SIDE} px a side, got {dem.shape}")
    valid = dem != MISSING
    heights = np.where(valid, np.clip(dem, 0, 32767), _VOID).astype(np.int16)
    metres = np.where(valid, heights, 0).astype(np.float64)
    side = min(dem.shape)
    search, search_ok = _block_mean(np.sqrt(metres), valid, max(1, round(side / _SEARCH_SIDE)))
    if search_ok.any() and not search_ok.all():
        _, (ri, ci) = ndimage.distance_transform_edt(~search_ok, return_indices=True)
        search = search[ri, ci]
    # Band-pass: smoothed by one block, so that crops a stride apart still correlate, less
    # the broad ramp from sea to hills that every coast shares and that tells none apart.
    search = ndimage.gaussian_filter(search, 1.0, mode="nearest") - ndimage.gaussian_filter(
        search, 8.0, mode="nearest"
    )
    mid, mid_ok = _block_mean(metres, valid, max(1, round(side / _MID_SIDE)))
    return DemSignature(
        heights=heights,
        search=search.astype(np.float32),
        mid=mid.astype(np.float32),
        mid_valid=mid_ok,
        embedding=dem_embedding(dem),
        land=int((heights > 0).sum()),
    )


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
        ValueError: threshold outside (0, 1), max_group_size < 1, unknown method, max_shift
            outside (0, 0.5], or a DEM that is not 2-D or under 8 px a side.
    """
    _check_arguments(threshold, max_group_size)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < max_shift <= 0.5:
        raise ValueError(f"max_shift must be in (0, 0.5], got {max_shift}")
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
        for members in _components(len(idx), edges, threshold, max_group_size):
            labels[idx[members]] = next_label
            next_label += 1
    return _renumber(labels)


def _check_arguments(threshold: float, max_group_size: int | None) -> None:
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if max_group_size is not None and max_group_size < 1:
        raise ValueError(f"max_group_size must be >= 1, got {max_group_size}")


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


def _block_mean(
    values: np.ndarray, valid: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``factor``-px blocks over valid pixels (the last partial row/column dropped).

    Returns:
        ``(H // factor, W // factor)`` float64 means (0 where invalid) and bool validity
        (at least half the block valid).
    """
    h, w = values.shape[0] // factor, values.shape[1] // factor
    v = values[: h * factor, : w * factor].reshape(h, factor, w, factor)
    m = valid[: h * factor, : w * factor].reshape(h, factor, w, factor)
    counts = m.sum(axis=(1, 3))
    sums = np.where(m, v, 0).sum(axis=(1, 3))
    ok = counts >= factor * factor / 2
    return np.where(ok, sums / np.maximum(counts, 1), 0.0), ok


@dataclass(frozen=True)
class _Edge:
    """A verified pair of tiles (indices into the tiles of one shape)."""

    i: int
    j: int
    score: float  # min(NCC of heights, NCC of slopes)
    points: int  # land pixels both showed
    agreement: float  # least share of one tile's land explained by the other (land or tide)


def _required(threshold: float, points: np.ndarray) -> np.ndarray:
    """Least score linking two tiles that both show ``points`` land pixels."""
    return 1.0 - (1.0 - threshold) * np.minimum(1.0, points / _FULL_POINTS)


def _match(sigs: list[DemSignature], max_shift: float, threshold: float) -> list[_Edge]:
    """Verified pairs among same-shape tiles with shape (indices into ``sigs``).

    Pairs whose tiles are already linked through others are not verified again: a spanning
    forest of links gives the same areas at ``threshold``.
    """
    pairs = sorted(_search_candidates(sigs, max_shift))
    factor = max(1, round(min(sigs[0].heights.shape) / _MID_SIDE))
    points: dict[int, _Points] = {}
    linked = _UnionFind(len(sigs))
    edges: list[_Edge] = []

    def verify(i: int, j: int, starts: list[tuple[int, int]], radius: int) -> _Edge:
        for t in (i, j):
            if t not in points:
                points[t] = _land_points(sigs[t].heights)
        a, b = sigs[i].heights, sigs[j].heights
        edge = _verify(a, b, points[i], points[j], (i, j), starts, radius, threshold)
        if edge.points >= _MIN_POINTS and edge.agreement >= _MIN_AGREEMENT:
            edges.append(edge)
            if edge.score >= _required(threshold, np.array([edge.points]))[0]:
                linked.union(i, j)
        return edge

    for start in range(0, len(pairs), _BATCH):
        todo = [(i, j) for i, j in pairs[start : start + _BATCH] if not linked.same(i, j)]
        for (i, j), peaks in _align(sigs, todo, max_shift).items():
            if peaks and not linked.same(i, j):
                starts = [(round(dy * factor), round(dx * factor)) for dy, dx, _ in peaks]
                # Tides and voids can move a peak by a block or so: search a block around.
                verify(i, j, starts, factor + 1)
    for (i, j), shift in sorted(_patch_candidates(sigs).items()):
        if not linked.same(i, j):
            verify(i, j, [shift], 1)
    return edges


class _UnionFind:
    """Disjoint sets of ``0..n-1`` (path halving)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, k: int) -> int:
        """The representative of ``k``'s set."""
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def union(self, a: int, b: int) -> None:
        """Merge the sets of ``a`` and ``b``."""
        self.parent[self.find(a)] = self.find(b)

    def same(self, a: int, b: int) -> bool:
        """Whether ``a`` and ``b`` are in one set."""
        return self.find(a) == self.find(b)


def _search_candidates(sigs: list[DemSignature], max_shift: float) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose search maps correlate well at some crop offset.

    Tiles with little land are left to :func:`_patch_candidates`: their nearly flat maps
    correlate with any bump anywhere and would crowd out the true matches of others.
    """
    area = sigs[0].heights.size
    searched = np.array([t for t, s in enumerate(sigs) if s.land >= _SMALL_LAND * area])
    k = min(_NEIGHBOURS, len(searched) - 1)
    if k < 1:
        return set()
    maps = np.stack([sigs[t].search for t in searched])
    n, s0, s1 = maps.shape
    # Queries at offsets 0, middle and end of each axis reach shifts up to (1 - share) of the
    # side; within that, larger crops tell terrains apart better.
    share = min(0.9, max(0.4, 0.95 - max_shift))
    crop = (max(2, min(round(s0 * share), s0 - 1)), max(2, min(round(s1 * share), s1 - 1)))
    queries = _crops(maps, crop, _QUERY_STEPS, _QUERY_STEPS)  # (n, nq, d)
    bank = _crops(maps, crop, (s0 - crop[0]) // _STRIDE + 1, (s1 - crop[1]) // _STRIDE + 1)
    nq, nb = queries.shape[1], bank.shape[1]
    flat_bank = bank.reshape(n * nb, -1)
    has_query = np.abs(queries).sum(axis=2) > 0  # (n, nq): crops without relief never match
    pairs: set[tuple[int, int]] = set()
    chunk = max(1, (1 << 24) // (nq * n * nb))  # ~64 MB of similarities at a time
    for start in range(0, n, chunk):
        rows = queries[start : start + chunk]
        sim = (rows.reshape(-1, rows.shape[2]) @ flat_bank.T).reshape(len(rows), nq, n, nb)
        best = np.where(has_query[start : start + chunk, :, None], sim.max(axis=3), -1.0)
        best = best.max(axis=1)  # (rows, n): best crop against best crop
        best[np.arange(len(rows)), start + np.arange(len(rows))] = -1.0
        top = np.argpartition(-best, k - 1, axis=1)[:, :k]
        for r, js in enumerate(top):
            i = int(searched[start + r])
            for j in searched[js[best[r, js] >= _CANDIDATE_MIN]].tolist():
                pairs.add((min(i, j), max(i, j)))
    return pairs


def _crops(maps: np.ndarray, crop: tuple[int, int], n0: int, n1: int) -> np.ndarray:
    """Centred, unit-norm crops of every map at ``n0 x n1`` offsets spread over the map.

    Args:
        maps: ``(n, S, S')`` float32 search maps.
        crop: crop size in map px.
        n0, n1: offsets per axis (from 0 to the last that fits, evenly spaced).

    Returns:
        ``(n, offsets, d)`` float32; crops are averaged over ``_POOL`` px first (fewer
        dimensions, more tolerance to the stride); a crop without relief (all sea) is a zero
        vector.
    """
    n, s0, s1 = maps.shape
    p0, p1 = max(1, crop[0] // _POOL), max(1, crop[1] // _POOL)
    f0, f1 = crop[0] // p0, crop[1] // p1
    out = []
    for r in _offsets(s0, crop[0], n0):
        for c in _offsets(s1, crop[1], n1):
            block = maps[:, r : r + p0 * f0, c : c + p1 * f1].reshape(n, p0, f0, p1, f1)
            out.append(block.mean(axis=(2, 4)).reshape(n, -1))
    x = np.stack(out, axis=1).astype(np.float32)
    x -= x.mean(axis=2, keepdims=True)
    norm = np.linalg.norm(x, axis=2, keepdims=True)
    return np.where(norm > 1e-4, x / np.maximum(norm, 1e-4), 0.0).astype(np.float32)


def _offsets(side: int, crop: int, count: int) -> np.ndarray:
    return np.unique(np.rint(np.linspace(0, side - crop, max(count, 1))).astype(int))


def _align(
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
    for start in range(0, len(pairs), _BATCH):
        batch = np.array(pairs[start : start + _BATCH])
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


@dataclass(frozen=True)
class _Points:
    """Up to ``_POINTS`` land pixels of a tile, evenly spread, and their square-rooted heights."""

    ys: np.ndarray  # (P,) int32
    xs: np.ndarray  # (P,) int32
    root: np.ndarray  # (P,) float64
    slopes: np.ndarray  # (2, P) float32 differences to the pixel below / right, NaN off land


def _land_points(heights: np.ndarray) -> _Points:
    """The points of a tile, kept for all its pairs (~30 kB a tile)."""
    ys, xs = np.nonzero(heights > 0)
    if len(ys) > _POINTS:
        keep = np.linspace(0, len(ys) - 1, _POINTS).astype(int)
        ys, xs = ys[keep], xs[keep]
    ys, xs = ys.astype(np.int32), xs.astype(np.int32)
    root = np.sqrt(heights[ys, xs].astype(np.float64))
    slopes = _slopes(heights, ys, xs, np.zeros(2, dtype=np.int64), root)
    return _Points(ys, xs, root, slopes.astype(np.float32))


def _slopes(
    b: np.ndarray, ys: np.ndarray, xs: np.ndarray, shift: np.ndarray, here: np.ndarray
) -> np.ndarray:
    """``(2, P)`` differences of square-rooted heights of ``b`` from the shifted points (whose
    values are ``here``) to the pixel below and to the right; NaN where either is not land."""
    steps = np.array([[1, 0], [0, 1]])
    return np.stack([_sample(b, ys + dy, xs + dx, shift[None, :])[0] for dy, dx in steps]) - here


def _verify(
    a: np.ndarray,
    b: np.ndarray,
    pa: _Points,
    pb: _Points,
    pair: tuple[int, int],
    starts: list[tuple[int, int]],
    radius: int,
    threshold: float,
) -> _Edge:
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
        r[n < _MIN_POINTS * len(pa.root[few]) / len(pa.root)] = -np.inf
        if not r.max(initial=-np.inf) >= _FIRST_MIN:
            return _Edge(*pair, -1.0, 0, 0.0)  # nothing near: not worth the full comparison
        best = shifts[np.argsort(-r, kind="stable")[:3]]
        shifts = _unique_shifts(best[:, None, :] + _square(np.arange(-1, 2))[None])
    there = _sample(b, pa.ys, pa.xs, shifts)
    r, n = _ncc(pa.root, there)
    r[n < _MIN_POINTS] = -np.inf
    edge = _Edge(*pair, -1.0, 0, 0.0)
    for k in np.argsort(-r, kind="stable")[:2]:
        if not np.isfinite(r[k]):
            break
        if r[k] < _required(threshold, n[k : k + 1])[0]:
            score = float(r[k])  # fails already: the slopes cannot save it
        else:
            slopes = _slopes(b, pa.ys, pa.xs, shifts[k], there[k])
            score = min(float(r[k]), _slope_ncc(pa.slopes, slopes), 1.0)
        if score > edge.score:
            agreement = _land_agreement(a, b, pa, pb, shifts[k])
            edge = _Edge(*pair, score, int(n[k]), agreement)
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
    return np.where(inside, b.ravel()[np.where(inside, y * w + x, 0)], _VOID)


def _sample(b: np.ndarray, ys: np.ndarray, xs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``(len(shifts), len(ys))`` float64 square-rooted heights of ``b`` at the shifted points;
    NaN where the point falls outside, on sea or on a void."""
    values = _lookup(b, ys, xs, shifts)
    land = values > 0
    return np.where(land, np.sqrt(np.maximum(values, 0).astype(np.float64)), np.nan)


def _land_agreement(
    a: np.ndarray, b: np.ndarray, pa: _Points, pb: _Points, shift: np.ndarray
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
    if ok.sum() < _MIN_POINTS // 2:
        return -1.0
    r, _ = _ncc(here[ok], there[ok][None, :])
    return float(r[0]) if np.isfinite(r[0]) else -1.0


def _patch_candidates(sigs: list[DemSignature]) -> dict[tuple[int, int], tuple[int, int]]:
    """Pairs involving a tile with little land that share exact 2x2 land patches.

    The search maps cannot see a sliver of land, but its heights are those of the other
    dates: every 2x2 patch of land heights with some relief of the small tiles is indexed;
    each tile's patches are looked up, and a pair sharing at one offset at least
    ``_PATCH_HITS`` patches and ``_PATCH_SHARE`` of the smaller tile's becomes a candidate
    with that offset (the full-resolution shift).

    Returns:
        ``{(i, j): (dy, dx)}``, ``i < j``, tile ``j`` at ``(y + dy, x + dx)`` showing what
        tile ``i`` shows at ``(y, x)``.
    """
    area = sigs[0].heights.size
    small = [t for t, s in enumerate(sigs) if s.land < _SMALL_LAND * area]
    if not small:
        return {}
    keys, owner, pos_y, pos_x = [], [], [], []
    n_keys = np.zeros(len(sigs), dtype=np.int64)
    for t in small:
        k, y, x = _patches(sigs[t].heights)
        n_keys[t] = len(k)
        keys.append(k)
        owner.append(np.full(len(k), t))
        pos_y.append(y)
        pos_x.append(x)
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    key, tile = key[order], np.concatenate(owner)[order]
    py, px = np.concatenate(pos_y)[order], np.concatenate(pos_x)[order]
    unique, first, counts = np.unique(key, return_index=True, return_counts=True)
    usable = counts <= _PATCH_COMMON  # flat coastal patterns are everywhere: not evidence
    unique, first, counts = unique[usable], first[usable], counts[usable]
    # A table of hashed keys rules out most patches of a tile before the binary search.
    indexed = np.zeros(1 << _BUCKET_BITS, dtype=bool)
    indexed[_bucket(unique)] = True
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for u, sig in enumerate(sigs):
        k, y, x = _patches(sig.heights)
        n_patches = len(k)
        maybe = indexed[_bucket(k)]
        k, y, x = k[maybe], y[maybe], x[maybe]
        slot = np.searchsorted(unique, k)
        hit = (slot < len(unique)) & (unique[np.minimum(slot, len(unique) - 1)] == k)
        if not hit.any():
            continue
        slot, y, x = slot[hit], y[hit], x[hit]
        reps = counts[slot]
        entry = np.repeat(first[slot], reps) + _ramp(reps)
        other = tile[entry].astype(np.int64)
        dy = py[entry] - np.repeat(y, reps)
        dx = px[entry] - np.repeat(x, reps)
        keep = other != u
        # One integer per (tile, dy, dx) vote; offsets are within +-2^15 px.
        vote = (other[keep] << 32) | ((dy[keep] + (1 << 15)) << 16) | (dx[keep] + (1 << 15))
        votes, n_votes = np.unique(vote, return_counts=True)
        # A true pair shares a good part of the smaller tile's patches at its offset; chance
        # coincidences of a few neighbouring patches do not.
        need = np.maximum(_PATCH_HITS, _PATCH_SHARE * np.minimum(n_keys[votes >> 32], n_patches))
        for v in votes[n_votes >= need].tolist():
            t, sy, sx = v >> 32, ((v >> 16) & 0xFFFF) - (1 << 15), (v & 0xFFFF) - (1 << 15)
            pair, shift = ((u, t), (sy, sx)) if u < t else ((t, u), (-sy, -sx))
            out.setdefault(pair, shift)
    return out


def _bucket(keys: np.ndarray) -> np.ndarray:
    """``_BUCKET_BITS``-bit hashes of int64 keys (Fibonacci hashing)."""
    mixed = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # wraps modulo 2**64
    return (mixed >> np.uint64(64 - _BUCKET_BITS)).astype(np.int64)


def _ramp(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each c in ``counts``, concatenated."""
    ends = np.cumsum(counts)
    return np.arange(int(ends[-1])) - np.repeat(ends - counts, counts)


def _patches(heights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact keys of a tile's 2x2 land patches with relief and their top-left px.

    Returns:
        ``(K,)`` int64 keys, ``(K,)`` rows and ``(K,)`` columns of the patches whose four
        pixels are land and span at least ``_PATCH_RELIEF`` m (flat patches are common to
        every low coast, so they are no evidence).
    """
    h = heights.astype(np.int64)
    a, b, c, d = h[:-1, :-1], h[:-1, 1:], h[1:, :-1], h[1:, 1:]
    low = np.minimum(np.minimum(a, b), np.minimum(c, d))
    high = np.maximum(np.maximum(a, b), np.maximum(c, d))
    ok = (low > 0) & (high - low >= _PATCH_RELIEF)
    y, x = np.nonzero(ok)
    # Heights are 15-bit: four of them pack into one int64 without collisions.
    key = (((a[ok] << 15) | b[ok]) << 15 | c[ok]) << 15 | d[ok]
    return key, y, x


def _components(n: int, edges: list[_Edge], threshold: float, cap: int | None) -> list[np.ndarray]:
    """Connected components of the edges that pass ``threshold``, larger ones than ``cap``
    split again at stricter thresholds (finally into chunks of ``cap``)."""
    if not edges:
        return [np.array([k]) for k in range(n)]
    scores = np.array([e.score for e in edges])
    points = np.array([e.points for e in edges])
    ends = np.array([(e.i, e.j) for e in edges])
    keep = scores >= _required(threshold, points) - 1e-12
    graph = coo_matrix((np.ones(int(keep.sum())), (ends[keep, 0], ends[keep, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    groups = [np.flatnonzero(labels == k) for k in range(count)]

    def regroup(members: np.ndarray, stricter: float) -> list[np.ndarray]:
        local = {int(t): k for k, t in enumerate(members)}
        inner = [
            _Edge(local[e.i], local[e.j], e.score, e.points, e.agreement)
            for e in edges
            if e.i in local and e.j in local
        ]
        return _components(len(members), inner, stricter, cap)

    return _capped(groups, threshold, cap, regroup)
