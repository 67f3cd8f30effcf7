"""Areas from verified links for area grouping: disjoint sets, connected components, and
the split of components larger than a cap at stricter thresholds.
"""

from collections.abc import Callable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from kelp.data.grouping_verification import Edge, required

__all__ = ["UnionFind", "capped", "components"]


class UnionFind:
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


def components(n: int, edges: list[Edge], threshold: float, cap: int | None) -> list[np.ndarray]:
    """Connected components of the edges that pass ``threshold``, larger ones than ``cap``
    split again at stricter thresholds (finally into chunks of ``cap``)."""
    if not edges:
        return [np.array([k]) for k in range(n)]
    scores = np.array([e.score for e in edges])
    points = np.array([e.points for e in edges])
    ends = np.array([(e.i, e.j) for e in edges])
    keep = scores >= required(threshold, points) - 1e-12
    graph = coo_matrix((np.ones(int(keep.sum())), (ends[keep, 0], ends[keep, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    groups = [np.flatnonzero(labels == k) for k in range(count)]

    def regroup(members: np.ndarray, stricter: float) -> list[np.ndarray]:
        local = {int(t): k for k, t in enumerate(members)}
        inner = [
            Edge(local[e.i], local[e.j], e.score, e.points, e.agreement)
            for e in edges
            if e.i in local and e.j in local
        ]
        return components(len(members), inner, stricter, cap)

    return capped(groups, threshold, cap, regroup)


def capped(
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
