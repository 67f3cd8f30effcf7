"""Cross-validated scoring of the base models, their logit average and each meta-model.

A meta-model is scored on fold k after being fit only on pixels of the other folds' tiles;
every candidate is counted on every pixel of the same held-out tiles.
"""

import functools
import operator
from collections.abc import Callable, Sequence

import numpy as np

from kelp._progress import track
from kelp.errors import InputError
from kelp.maps import MapStore, sigmoid
from kelp.stacking.config import BEST, MetaName, StackConfig
from kelp.stacking.inputs import BaseMaps
from kelp.stacking.meta import MetaModel, create_meta, meta_features
from kelp.stacking.samples import Rows, Truth
from kelp.thresholds import ThresholdCounts

__all__ = ["AVERAGE", "best_meta", "fit_meta", "fused_probability", "nested_meta", "score_folds"]

AVERAGE = "mean-logit"

Fit = Callable[[MetaName, list[Rows], StackConfig], MetaModel]


def fit_meta(name: MetaName, rows: list[Rows], config: StackConfig) -> MetaModel:
    """Fit meta-model ``name`` on the sampled rows of some tiles.

    Raises:
        InputError: no kelp pixel among them.
    """
    meta = create_meta(name, config.seed, config.lightgbm)
    X = np.concatenate(
        [r.spatial if meta.spatial and r.spatial is not None else r.plain for r in rows]
    )
    y = np.concatenate([r.label for r in rows])
    w = np.concatenate([r.weight for r in rows])
    if not y.any():
        raise InputError(
            "no kelp pixel among the out-of-fold pixels the meta-model is fit on: the "
            "stacker needs train tiles with kelp in every fold but one"
        )
    return meta.fit(X, y, w)


def fused_probability(meta: MetaModel, logits: np.ndarray, land: np.ndarray) -> np.ndarray:
    """``(H, W) float32`` fused P(kelp) of one tile from its ``(M, H, W)`` base logits."""
    planes = meta_features(logits, land, meta.spatial)
    flat = planes.reshape(planes.shape[0], -1).T
    return sigmoid(meta.predict_logit(flat).reshape(logits.shape[1:]))


def best_meta(
    counts: dict[str, dict[int, ThresholdCounts]], compare: Sequence[MetaName], folds: Sequence[int]
) -> MetaName:
    """The compared meta-model with the best pooled Dice (at its best threshold) on ``folds``.

    Ties go to the first in ``compare`` order.
    """

    def dice(name: MetaName) -> float:
        pooled = functools.reduce(operator.add, [counts[f"stack-{name}"][f] for f in folds])
        return pooled.best()[1].dice

    return max(compare, key=dice)


def nested_meta(
    counts: dict[str, dict[int, ThresholdCounts]], compare: Sequence[MetaName], k: int
) -> dict[int, MetaName]:
    """Per fold, the meta-model :func:`best_meta` picks on the *other* folds only."""
    return {f: best_meta(counts, compare, [g for g in range(k) if g != f]) for f in range(k)}


def score_folds(
    tile_ids: Sequence[str],
    rows: dict[str, Rows],
    truths: dict[str, Truth],
    base: BaseMaps,
    k: int,
    config: StackConfig,
    store: MapStore,
    fit: Fit = fit_meta,
) -> dict[str, dict[int, ThresholdCounts]]:
    """Per candidate and fold, threshold counts on the fold's held-out tiles.

    Candidates: each base model, :data:`AVERAGE` and ``stack-<meta>`` for each compared
    meta-model; the fused maps of ``config.meta`` are written to ``store``. With
    ``meta = "best"``, fold k's maps are those of the meta-model chosen on the other folds
    (:func:`nested_meta`), and ``stack-best`` holds their counts.
    """
    names = [*base.names, AVERAGE, *(f"stack-{m}" for m in config.compare)]
    counts = {n: {f: ThresholdCounts() for f in range(k)} for n in names}
    kept: dict[int, dict[MetaName, MetaModel]] = {}
    for fold in range(k):
        train = [r for r in rows.values() if r.fold != fold]
        metas = {m: fit(m, train, config) for m in config.compare}
        if config.meta == BEST:
            kept[fold] = metas
        held_out = [t for t in tile_ids if base.fold_of[t] == fold]
        for tile_id in track(held_out, f"fold {fold}: scoring held-out tiles"):
            truth, land = truths[tile_id].truth(), truths[tile_id].land_mask()
            logits = base.logits(tile_id)
            for name, z in zip(base.names, logits, strict=True):
                counts[name][fold].update(sigmoid(z), truth)
            counts[AVERAGE][fold].update(sigmoid(logits.mean(axis=0)), truth)
            for m, meta in metas.items():
                prob = fused_probability(meta, logits, land)
                counts[f"stack-{m}"][fold].update(prob, truth)
                if m == config.meta:
                    store.write(tile_id, prob, "probability")
    if config.meta == BEST:
        chosen = nested_meta(counts, config.compare, k)
        counts[f"stack-{BEST}"] = {f: counts[f"stack-{chosen[f]}"][f] for f in range(k)}
        for fold in range(k):
            held_out = [t for t in tile_ids if base.fold_of[t] == fold]
            meta = kept[fold][chosen[fold]]
            for tile_id in track(held_out, f"fold {fold}: fusing with {chosen[fold]}"):
                land = truths[tile_id].land_mask()
                prob = fused_probability(meta, base.logits(tile_id), land)
                store.write(tile_id, prob, "probability")
    return counts
