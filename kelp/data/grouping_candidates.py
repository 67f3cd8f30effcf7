"""Candidate pairs for area grouping (step 1 of :mod:`kelp.data.grouping`).

Tiles with land are paired by correlating crops of their search maps; tiles with little land
(whose maps show nothing) by the exact 2x2 land-height patches they share.
"""

from typing import Final

import numpy as np

from kelp.data.signatures import DemSignature

__all__ = ["patch_candidates", "search_candidates"]

_SMALL_LAND: Final = 0.02  # share of the tile: below it candidates also come from patches
_QUERY_STEPS: Final = 3  # query crops per axis
_STRIDE: Final = 2  # search-map px between the crops a query is compared with
_POOL: Final = 3  # search crops are averaged over 3x3 px before comparing
_NEIGHBOURS: Final = 20  # candidates kept per tile
_CANDIDATE_MIN: Final = 0.3  # least crop correlation of a candidate
_PATCH_HITS: Final = 3  # least exact 2x2 patches at one offset that make a candidate
_PATCH_SHARE: Final = 0.1  # ... and least share of the smaller tile's patches
_PATCH_COMMON: Final = 32  # patches found this often in small tiles are too common to count
_PATCH_RELIEF: Final = 2  # m: least height range of a patch that counts
_BUCKET_BITS: Final = 24  # size of the patch look-up table (2 MB)


def search_candidates(sigs: list[DemSignature], max_shift: float) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose search maps correlate well at some crop offset.

    Tiles with little land are left to :func:`patch_candidates`: their nearly flat maps
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


def patch_candidates(sigs: list[DemSignature]) -> dict[tuple[int, int], tuple[int, int]]:
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
