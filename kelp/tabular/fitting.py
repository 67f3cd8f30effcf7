"""One fold of one tree model: fit on the fold's training rows, predict its held-out tiles.

Fitting early-stops on an inner area-grouped part of the training tiles
(:func:`kelp.data.split.plan_fold`) when the model supports it; the out-of-fold maps are
predicted from each held-out tile's full channel stack, exactly as ``kelp predict`` does
with a fold ensemble of one.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kelp._prefetch import prefetched
from kelp._progress import track
from kelp.data.catalog import TileRecord
from kelp.data.split import FoldPlan
from kelp.data.tile import Tile, load_tile
from kelp.devices import ResolvedDevice
from kelp.errors import InputError
from kelp.features.manifest import FeatureBuild
from kelp.features.stack import build_channels
from kelp.layout import RunLayout
from kelp.maps import MapStore, sigmoid
from kelp.tabular.config import ModelName, TabularConfig
from kelp.tabular.data import FeatureTable, RowSample, check_feature_names
from kelp.tabular.models.base import TreeModel
from kelp.tabular.predict import fold_logits, pixel_rows
from kelp.tabular.registry import model_class
from kelp.thresholds import ThresholdCounts

__all__ = ["FIT", "STOP", "TRAIN", "RowReader", "fit_model", "fold_summary", "predict_fold"]

FIT, STOP, TRAIN = 0, 1, 2
"""Which rows of a fold: fitting tiles, early-stopping tiles, both (no early stopping);
each drawn under its own seed when capped."""


RowReader = Callable[[Sequence[str], int], tuple[FeatureTable, RowSample]]
"""``read(tiles, stream)``: the rows of ``tiles`` (capped, seeded by ``stream``)."""


def fit_model(
    name: ModelName,
    device: ResolvedDevice,
    plan: FoldPlan,
    read: RowReader,
    config: TabularConfig,
) -> tuple[TreeModel, dict[str, Any]]:
    """Fit model ``name`` on the fold's training rows (read through ``read``); returns it
    and what ``metrics.json`` records of the fit."""
    cls = model_class(name)
    model = cls(
        config.params.get(name),
        device=device,
        n_jobs=config.n_jobs,
        seed=config.seed,
        max_rounds=config.max_rounds,
        early_stopping_rounds=config.early_stopping_rounds,
    )
    stopping = cls.uses_early_stopping and bool(plan.stop_tiles)
    fit_tiles = plan.fit_tiles if stopping else plan.train_tiles
    fit, fit_sample = read(fit_tiles, FIT if stopping else TRAIN)
    eval_set = None
    samples = {"fit": fit_sample.as_dict()}
    if stopping:
        stop, stop_sample = read(plan.stop_tiles, STOP)
        samples["stop"] = stop_sample.as_dict()
        eval_set = (stop.features, stop.label, stop.weight if config.sample_weight else None)
    started = time.perf_counter()
    model.fit(
        fit.features,
        fit.label,
        fit.weight if config.sample_weight else None,
        eval_set=eval_set,
        feature_names=fit.feature_names,
    )
    info = {
        "fit_tiles": list(fit_tiles),
        "stop_tiles": list(plan.stop_tiles) if stopping else [],
        "stop_areas": list(plan.stop_areas) if stopping else [],
        "early_stopping": (
            "on" if stopping else plan.note or "off: this model does not early-stop"
        ),
        "fit_rows": len(fit.label),
        "fit_kelp_rows": int(fit.label.sum()),
        "rows": samples,
        "stop_rows": 0 if eval_set is None else len(eval_set[1]),
        "best_iteration": model.best_iteration_,
        "train_seconds": round(time.perf_counter() - started, 3),
        "device": device,
    }
    return model, info


def predict_fold(
    fold: int,
    models: Mapping[ModelName, TreeModel],
    tiles: Sequence[str],
    records: Mapping[str, TileRecord],
    build: FeatureBuild,
    layout: RunLayout,
    config: TabularConfig,
) -> tuple[dict[ModelName, ThresholdCounts], dict[ModelName, float], int]:
    """Write each model's out-of-fold logit map of every held-out tile.

    Returns:
        Per model the threshold counts over those tiles and the seconds spent predicting,
        and the number of pixels predicted (per model).
    """
    counts = {name: ThresholdCounts() for name in models}
    seconds = dict.fromkeys(models, 0.0)
    stores = {name: MapStore(layout.oof(name)) for name in models}
    names = next(iter(models.values())).feature_names_in_
    pixels = 0

    def prepare(tile_id: str) -> tuple[Tile, np.ndarray, np.ndarray]:
        tile = load_tile(records[tile_id], build.band_order)
        if tile.mask is None:
            raise InputError(f"train tile {tile_id} has no kelp mask")
        stack, stack_names = build_channels(tile, build.config)
        check_feature_names(names, stack_names, f"tile {tile_id}")
        return tile, tile.mask, pixel_rows(stack)

    # The next tile's stack is computed while the models predict this one.
    prepared = prefetched(tiles, prepare)
    for tile, mask, rows in track(prepared, f"fold {fold}: out-of-fold maps", len(tiles)):
        pixels += len(rows)
        for name, model in models.items():
            started = time.perf_counter()
            # The fold ensemble of one: exactly what `kelp predict` computes per fold model.
            z = fold_logits([model], rows, config.chunk_pixels).reshape(tile.shape)
            seconds[name] += time.perf_counter() - started
            stores[name].write(tile.tile_id, z, "logit")
            counts[name].update(sigmoid(z), mask)
    return counts, seconds, pixels


def fold_summary(counts: ThresholdCounts) -> dict[str, Any]:
    """The headline out-of-fold scores of one fold."""
    at_half = counts.at(0.5)
    threshold, best = counts.best()
    return {
        "dice_at_0.5": at_half.dice,
        "best_threshold": threshold,
        "dice_at_best": best.dice,
        "n_tiles": counts.n_tiles,
    }
