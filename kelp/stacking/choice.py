"""Choosing the post-processing (and, with ``meta = "best"``, the meta-model) on the
cross-validated fused maps, in-sample and nested."""

import functools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kelp._progress import track
from kelp.maps import MapStore
from kelp.metrics import Counts
from kelp.stacking.config import MetaName, StackConfig
from kelp.stacking.postprocess import Decision, Sweep, coarse_grid, fine_grid, pool, rank
from kelp.stacking.samples import Truth

__all__ = ["Choice", "choose", "choose_meta"]


@dataclass(frozen=True)
class Choice:
    """The post-processing decision, in-sample and nested."""

    decision: Decision
    counts: Counts  # the decision on the maps it was chosen on (optimistic)
    nested: Counts  # each fold under the decision chosen on the other folds, pooled
    per_fold: dict[int, tuple[Decision, Counts]]
    # per fold k: the counts, pooled over the other folds, of the decision chosen on them
    inner: dict[int, Counts]
    sweep: Sweep  # every decision searched, pooled over all folds (``sweep.csv``)


def choose(
    store: MapStore,
    tile_ids: list[str],
    fold_of: dict[str, int],
    truths: dict[str, Truth],
    config: StackConfig,
) -> Choice:
    """Choose the decision on all folds, and score each fold under one chosen on the others.

    Two passes over the fused maps, with per-fold counts: the coarse threshold grid, then
    the fine grids around the coarse optimum of every selection (all folds, all folds but
    k), so each nested choice searches exactly the grid the final choice searches.
    """
    pp = config.postprocess
    folds = sorted({fold_of[t] for t in tile_ids})

    def run_sweep(thresholds: list[float], label: str) -> dict[int, dict[Decision, Counts]]:
        sweeps = {f: Sweep(thresholds, pp) for f in folds}
        for tile_id in track(tile_ids, label):
            known = truths[tile_id]
            sweeps[fold_of[tile_id]].update(store.read(tile_id), known.truth(), known.land_mask())
        return {f: sweep.counts for f, sweep in sweeps.items()}

    coarse = run_sweep(coarse_grid(pp.coarse_step), "post-processing: coarse thresholds")
    selections: dict[int | None, list[int]] = {None: folds}
    selections.update({f: [g for g in folds if g != f] for f in folds if len(folds) > 1})
    centres = {
        s: rank(pool([coarse[f] for f in chosen]))[0][0].threshold
        for s, chosen in selections.items()
    }
    grids = {s: fine_grid(c, pp.coarse_step, pp.fine_step) for s, c in centres.items()}
    fine = run_sweep(sorted({t for g in grids.values() for t in g}), "post-processing: refine")

    def searched(selection: int | None, fold: int) -> dict[Decision, Counts]:
        """Fold ``fold``'s counts on the grid that ``selection`` searches."""
        grid = set(grids[selection])
        extra = {d: c for d, c in fine[fold].items() if d.threshold in grid}
        return {**coarse[fold], **extra}

    everything = pool([searched(None, f) for f in folds])
    sweep = Sweep([], pp)
    sweep.counts = everything
    decision, counts = rank(everything)[0]
    per_fold: dict[int, tuple[Decision, Counts]] = {}
    inner: dict[int, Counts] = {}
    for fold in folds:
        if fold not in selections:  # one fold only: nothing to choose on but itself
            per_fold[fold] = (decision, searched(None, fold)[decision])
            inner[fold] = counts
            continue
        chosen, inner[fold] = rank(pool([searched(fold, f) for f in selections[fold]]))[0]
        per_fold[fold] = (chosen, searched(fold, fold)[chosen])
    nested = functools.reduce(operator.add, (c for _, c in per_fold.values()))
    return Choice(decision, counts, nested, per_fold, inner, sweep)


def choose_meta(
    choices: Mapping[MetaName, Choice], compare: Sequence[MetaName]
) -> tuple[MetaName, dict[int, MetaName], Choice]:
    """With ``meta = "best"``: choose the meta-model by what its masks score, post-processed.

    ``choices`` holds each compared meta-model's :func:`choose` on its own cross-validated
    maps. Fold k is fused by the meta-model whose decision chosen on the other folds scores
    best there (``inner``; fold k's own counts are never looked at) and scored under that
    decision; the meta-model fit for ``kelp predict`` is the one best on all folds, with its
    decision. Ties go to the first in ``compare`` order.

    Returns:
        The final meta-model, the meta-model of each fold, and the combined choice: the
        final meta-model's decision and in-sample counts, the nested counts of the per-fold
        choice.
    """
    folds = sorted(choices[compare[0]].per_fold)
    per_fold_meta = {f: max(compare, key=lambda m: choices[m].inner[f].dice) for f in folds}
    final = max(compare, key=lambda m: choices[m].counts.dice)
    per_fold = {f: choices[m].per_fold[f] for f, m in per_fold_meta.items()}
    nested = functools.reduce(operator.add, (c for _, c in per_fold.values()))
    inner = {f: choices[m].inner[f] for f, m in per_fold_meta.items()}
    best = choices[final]
    combined = Choice(best.decision, best.counts, nested, per_fold, inner, best.sweep)
    return final, per_fold_meta, combined
