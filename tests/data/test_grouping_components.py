"""Disjoint sets and capped connected components of verified links, on tiny hand-made graphs."""

import numpy as np
import pytest

from kelp.data.grouping_components import UnionFind, capped, components
from kelp.data.grouping_verification import Edge


def _groups(groups: list[np.ndarray]) -> list[list[int]]:
    return sorted(sorted(g.tolist()) for g in groups)


def test_union_find_merges_sets() -> None:
    sets = UnionFind(6)
    assert not sets.same(0, 1)
    sets.union(0, 1)
    sets.union(3, 4)
    assert sets.same(0, 1) and sets.same(1, 0) and sets.same(3, 4)
    assert not sets.same(1, 3)
    sets.union(0, 4)  # joins {0, 1} and {3, 4}, through members that are not the roots
    assert all(sets.same(0, k) for k in (1, 3, 4))
    assert len({sets.find(k) for k in (0, 1, 3, 4)}) == 1
    assert sets.find(2) == 2 and sets.find(5) == 5
    sets.union(2, 2)
    assert sets.find(2) == 2 and not sets.same(2, 5)


def test_edges_below_the_threshold_or_on_a_small_overlap_do_not_link() -> None:
    edges = [
        Edge(0, 1, 0.95, 1000, 1.0),
        Edge(1, 2, 0.95, 1000, 1.0),
        Edge(3, 4, 0.85, 1000, 1.0),  # below the threshold
        Edge(4, 5, 0.94, 100, 1.0),  # few shared land pixels: needs a closer match
    ]
    assert _groups(components(6, edges, 0.9, None)) == [[0, 1, 2], [3], [4], [5]]
    assert _groups(components(6, edges, 0.8, None)) == [[0, 1, 2], [3, 4], [5]]
    assert _groups(components(6, [*edges, Edge(4, 5, 0.99, 100, 1.0)], 0.9, None)) == [
        [0, 1, 2], [3], [4, 5],
    ]  # fmt: skip


def test_no_edges_gives_singletons() -> None:
    assert _groups(components(3, [], 0.9, None)) == [[0], [1], [2]]
    assert _groups(components(3, [], 0.9, 1)) == [[0], [1], [2]]


def test_a_component_over_the_cap_splits_at_a_stricter_threshold() -> None:
    # 0 1 2 alone; 3-4-5-6 a chain whose middle link passes 0.9 but not 0.95
    edges = [Edge(3, 4, 0.99, 1000, 1.0), Edge(4, 5, 0.93, 1000, 1.0), Edge(5, 6, 0.99, 1000, 1.0)]
    assert _groups(components(7, edges, 0.9, None)) == [[0], [1], [2], [3, 4, 5, 6]]
    assert _groups(components(7, edges, 0.9, 4)) == [[0], [1], [2], [3, 4, 5, 6]]
    assert _groups(components(7, edges, 0.9, 2)) == [[0], [1], [2], [3, 4], [5, 6]]


def test_links_no_threshold_can_break_are_cut_into_chunks_of_the_cap() -> None:
    edges = [Edge(i, j, 1.0, 1000, 1.0) for i in range(5) for j in range(i + 1, 5)]
    groups = components(5, edges, 0.9, 2)
    assert [len(g) for g in groups] == [2, 2, 1]
    assert sorted(np.concatenate(groups).tolist()) == [0, 1, 2, 3, 4]


def test_capped_regroups_only_the_groups_over_the_cap() -> None:
    calls: list[tuple[list[int], float]] = []

    def regroup(members: np.ndarray, stricter: float) -> list[np.ndarray]:
        calls.append((members.tolist(), stricter))
        return [np.array([0]), np.array([1, 2])]  # indices into members

    groups = [np.array([4, 5, 6]), np.array([7])]
    out = capped(groups, 0.9, 2, regroup)
    assert [g.tolist() for g in out] == [[4], [5, 6], [7]]
    assert calls == [([4, 5, 6], pytest.approx(0.95))]
    assert capped(groups, 0.9, None, regroup) is groups  # no cap: untouched
    assert len(calls) == 1


def test_capped_cuts_into_chunks_once_no_stricter_threshold_is_left() -> None:
    def regroup(members: np.ndarray, stricter: float) -> list[np.ndarray]:
        raise AssertionError("no threshold left to regroup at")

    out = capped([np.arange(5)], 1 - 1e-9, 2, regroup)
    assert [g.tolist() for g in out] == [[0, 1], [2, 3], [4]]
