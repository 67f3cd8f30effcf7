"""Benchmark DEM area grouping under date shifts, tides and DEM voids: cosine vs NCC method.

    python benchmarks/grouping.py                     # 60 areas x 2-8 dates of 350 px, seeds 1, 2
    python benchmarks/grouping.py --areas 30 --size 128 --seeds 1 --timing-tiles 0

Each stress set takes ``--areas`` of the generator's areas (``kelp.data.synth.area_dem``, on
a canvas large enough for the shifts) and cuts 2-8 dates from each with
``kelp.data.synth.stress_dems``: windows shifted by up to ``shift`` of the tile side, tides
flooding up to ``tide`` of the land, voids covering up to ``voids`` of the tile; alone and
combined, plus a generator-like set (3 px shifts). Both methods of
``kelp.data.grouping.group_areas`` group every set; one markdown row per set, seed and
method gives:

- ``ARI``: adjusted Rand index between true and found areas over all tiles; ``ARI land``
  over the tiles with land (>= 20 px): tiles that show no land at all are singletons by
  design and are what keeps ``ARI`` below 1 for a perfect grouping;
- ``split folds``: true areas whose tiles land on more than one fold after the split
  ``make_folds`` uses (``kelp.data.folds.split_areas``, k=5, stratified by "almost all
  water"), over the tiles with land; ``split groups``: true areas over several found groups
  (tiles with land); ``merged``: found groups holding tiles of several true areas;
- ``groups``: found groups; ``seconds``: DEM reduction plus grouping.

Each area the NCC method splits is listed with the most land pixels of equal height its
tiles in different groups share at any shift (a brute-force bound on what a DEM matcher can
use). ``--timing-tiles N`` (default 1000) then times the NCC method alone on about N tiles of
the combined stress.
"""

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score

from kelp.data.folds import split_areas
from kelp.data.grouping import (
    Method,
    dem_embedding,
    dem_signature,
    group_areas,
    group_embeddings,
)
from kelp.data.synth import area_dem, stress_dems

METHODS: tuple[Method, ...] = ("cosine", "ncc")  # old, new

#: name: (shift as a share of the side, tide as a share of the land, voids as a share of the tile)
SETS: dict[str, tuple[float, float, float]] = {
    "generator-like (3 px)": (6 / 350, 0.0, 0.0),
    "shift 20%": (0.2, 0.0, 0.0),
    "tide 40% of land": (6 / 350, 0.4, 0.0),
    "voids 30%": (6 / 350, 0.0, 0.3),
    "all three": (0.2, 0.4, 0.3),
}


@dataclass(frozen=True)
class StressSet:
    """DEMs of one stress set and the truth."""

    dems: list[np.ndarray]  # (size, size) int16 each
    truth: np.ndarray  # (N,) true area of each tile
    land: np.ndarray  # (N,) bool: the tile shows >= 20 land pixels


def build(seed: int, n_areas: int, size: int, stress: tuple[float, float, float]) -> StressSet:
    """2-8 dates of each of ``n_areas`` generator areas under ``stress``."""
    shift, tide, voids = stress
    rng = np.random.default_rng([seed, 99])
    dems: list[np.ndarray] = []
    truth: list[int] = []
    for area in range(n_areas):
        canvas = area_dem(seed, area, max(size + round(shift * size), 38))
        dates = int(rng.integers(2, 9))
        cut = stress_dems(canvas, size, dates, [seed, area], shift=shift, tide=tide, voids=voids)
        dems.extend(cut)
        truth.extend([area] * dates)
    land = np.array([dem_signature(d).has_shape for d in dems])
    return StressSet(dems, np.array(truth), land)


def group(dems: list[np.ndarray], method: Method) -> tuple[np.ndarray, float]:
    """Found areas and seconds (DEM reduction included) for one method."""
    start = time.perf_counter()
    if method == "cosine":
        labels = group_embeddings(np.stack([dem_embedding(d) for d in dems]))
    else:
        labels = group_areas([dem_signature(d) for d in dems])
    return labels, time.perf_counter() - start


def score(stress: StressSet, labels: np.ndarray) -> dict[str, float]:
    """The table's figures for one grouping of one set."""
    truth, land = stress.truth, stress.land
    almost_all_water = np.array([((d > 0).sum() < 0.02 * (d >= 0).sum()) for d in stress.dems])
    folds = split_areas(labels, almost_all_water.astype(int), 5, seed=0)

    def spread(found: np.ndarray) -> int:
        return sum(len(set(found[(truth == a) & land])) > 1 for a in np.unique(truth))

    return {
        "ari": adjusted_rand_score(truth, labels),
        "ari_land": adjusted_rand_score(truth[land], labels[land]),
        "split_folds": spread(folds),
        "split_groups": spread(labels),
        "merged": sum(len(set(truth[labels == g])) > 1 for g in np.unique(labels)),
        "groups": len(np.unique(labels)),
    }


def shared_land(a: np.ndarray, b: np.ndarray, reach: int) -> int:
    """Most land pixels of ``a`` (up to 3,000 sampled) whose height ``b`` shows at one shift.

    Brute force over every shift up to ``reach`` px: what any DEM matcher could use at best.
    """
    ys, xs = np.nonzero(a > 0)
    if len(ys) > 3000:
        keep = np.linspace(0, len(ys) - 1, 3000).astype(int)
        ys, xs = ys[keep], xs[keep]
    here = a[ys, xs]
    steps = np.arange(-reach, reach + 1)
    best = 0
    for dy in steps:
        y = ys + dy
        x = xs[None, :] + steps[:, None]
        inside = (y >= 0) & (y < b.shape[0]) & (x >= 0) & (x < b.shape[1])
        there = np.where(
            inside, b[np.clip(y, 0, b.shape[0] - 1), np.clip(x, 0, b.shape[1] - 1)], -1
        )
        best = max(best, int(((there == here) & (there > 0)).sum(axis=1).max()))
    return best


def explain_splits(stress: StressSet, labels: np.ndarray, size: int) -> list[str]:
    """One line per true area split by ``labels`` among its tiles with land."""
    lines = []
    for area in np.unique(stress.truth):
        tiles = np.flatnonzero((stress.truth == area) & stress.land)
        if len(set(labels[tiles])) < 2:
            continue
        shared = max(
            shared_land(stress.dems[i], stress.dems[j], round(0.25 * size))
            for i in tiles
            for j in tiles
            if labels[i] != labels[j]
        )
        land = [int((stress.dems[i] > 0).sum()) for i in tiles]
        lines.append(
            f"area {area}: tiles with {land} land px; tiles of different groups share at most "
            f"{shared} land px of equal height at any shift"
        )
    return lines


def main() -> None:
    """Build every set, group it with both methods, print the table and the timing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--areas", type=int, default=60)
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--seeds", default="1,2", help="generator seeds, comma-separated")
    parser.add_argument("--timing-tiles", type=int, default=1000, help="0 = skip the timing")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    print(f"{args.areas} areas x 2-8 dates of {args.size} px, seeds {args.seeds}\n")
    header = ["set", "seed", "tiles", "method", "ARI", "ARI land", "split folds",
              "split groups", "merged", "groups", "seconds"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    notes: list[str] = []
    for name, stress in SETS.items():
        for seed in seeds:
            data = build(seed, args.areas, args.size, stress)
            for method in METHODS:
                labels, seconds = group(data.dems, method)
                s = score(data, labels)
                cells = [name, str(seed), str(len(data.dems)), method, f"{s['ari']:.4f}",
                         f"{s['ari_land']:.4f}", str(s["split_folds"]), str(s["split_groups"]),
                         str(s["merged"]), str(s["groups"]), f"{seconds:.1f}"]  # fmt: skip
                print("| " + " | ".join(cells) + " |", flush=True)
                if method == "ncc":
                    notes += [
                        f"{name}, seed {seed}, {line}"
                        for line in explain_splits(data, labels, args.size)
                    ]
            print(f"done: {name}, seed {seed}", file=sys.stderr, flush=True)
    for line in notes:
        print(f"\nsplit by the NCC method: {line}")
    if args.timing_tiles > 0:
        data = build(7, max(1, round(args.timing_tiles / 5)), args.size, SETS["all three"])
        labels, seconds = group(data.dems, "ncc")
        s = score(data, labels)
        print(
            f"\nNCC method on {len(data.dems)} tiles of {args.size} px (all three stresses): "
            f"{seconds:.1f} s (DEM reduction included), ARI {s['ari']:.4f}, "
            f"ARI land {s['ari_land']:.4f}, split folds {s['split_folds']}, "
            f"merged {s['merged']}"
        )
        for line in explain_splits(data, labels, args.size):
            print(f"split: {line}")


if __name__ == "__main__":
    main()
