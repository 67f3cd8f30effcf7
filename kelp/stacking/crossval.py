"""Cross-validated scoring of the base models, their logit average and each meta-model.

A meta-model is scored on fold k after being fit only on pixels of the other folds' tiles;
every candidate is counted on every pixel of the same held-out tiles.
"""

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from kelp._progress import track
from kelp.errors import InputError
from kelp.maps import MapStore, sigmoid
from kelp.stacking.config import MetaName, StackConfig
from kelp.stacking.inputs import BaseMaps
from kelp.stacking.meta import MetaModel, create_meta, meta_features
from kelp.stacking.samples import Rows, Truth
from kelp.thresholds import ThresholdCounts

__all__ = ["AVERAGE", "fit_meta", "fused_probability", "score_folds"]

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


def score_folds(
    tile_ids: Sequence[str],
    rows: dict[str, Rows],
    truths: dict[str, Truth],
    base: BaseMaps,
    k: int,
    config: StackConfig,
    stores: Mapping[MetaName, MapStore],
    fit: Fit = fit_meta,
) -> dict[str, dict[int, ThresholdCounts]]:
    """Per candidate and fold, threshold counts on the fold's held-out tiles.

    Candidates: each base model, :data:`AVERAGE` and ``stack-<meta>`` for each compared
    meta-model. Each meta-model named in ``stores`` has its cross-validated fused maps
    written there: fold k's tiles fused by the model fit on the other folds.
    """
    names = [*base.names, AVERAGE, *(f"stack-{m}" for m in config.compare)]
    counts = {n: {f: ThresholdCounts() for f in range(k)} for n in names}
    for fold in range(k):
        train = [r for r in rows.values() if r.fold != fold]
        metas = {m: fit(m, train, config) for m in config.compare}
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
                if m in stores:
                    stores[m].write(tile_id, prob, "probability")
    return counts
