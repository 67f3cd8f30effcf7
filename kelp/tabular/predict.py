"""Dense prediction: every pixel of a tile's channel stack, by one model or a fold ensemble.

The stack is computed by the same ``kelp.features.build_channels`` that made the table,
with the feature config stored in each model's folder; its channel names and stack hash
must match the model's, or prediction stops (no silent reordering). Pixels go through the
model in chunks of ``chunk_pixels`` rows to bound memory.
"""

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kelp._prefetch import prefetched
from kelp.data.catalog import TileRecord
from kelp.data.tile import Tile, load_tile
from kelp.errors import StaleInputError
from kelp.features.config import FeatureConfig
from kelp.features.manifest import read_build
from kelp.features.stack import build_channels, channel_names
from kelp.layout import RunLayout
from kelp.maps import MapStore, logit, sigmoid, store_manifest
from kelp.tabular.data import check_feature_names
from kelp.tabular.models.base import MODEL_JSON, TreeModel
from kelp.tabular.registry import load_model

__all__ = [
    "feature_config_of",
    "fold_dirs",
    "fold_logits",
    "load_fold_models",
    "pixel_rows",
    "predict_pixels",
    "predict_tiles",
]

CHUNK_PIXELS = 1 << 18


def pixel_rows(stack: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` stack -> ``(H*W, C) float32`` C-contiguous rows, raster order."""
    c = stack.shape[0]
    return np.ascontiguousarray(stack.reshape(c, -1).T, dtype=np.float32)


def predict_pixels(
    model: TreeModel, rows: np.ndarray, chunk_pixels: int = CHUNK_PIXELS
) -> np.ndarray:
    """P(kelp) of ``(N, C)`` pixel rows, ``(N,) float32``, predicted in chunks."""
    out = np.empty(len(rows), np.float32)
    for start in range(0, len(rows), chunk_pixels):
        stop = start + chunk_pixels
        out[start:stop] = model.predict_kelp(rows[start:stop])
    return out


def feature_config_of(model: TreeModel) -> FeatureConfig:
    """The feature config a model was trained with, checked against its feature names.

    Raises:
        StaleInputError: the model folder records no feature config (not made by
            ``kelp train-trees``), or the config no longer yields the model's channels or
            stack hash (e.g. the channel code changed since training).
    """
    stored = model.inputs.get("feature_config")
    if stored is None:
        raise StaleInputError(
            f"this {model.name} model records no feature config: train it with "
            "`kelp train-trees` to predict whole tiles"
        )
    config = FeatureConfig.model_validate(stored)
    check_feature_names(
        model.feature_names_in_, channel_names(config), f"the {model.name} model's feature config"
    )
    if config.stack_hash() != model.inputs.get("stack_hash"):
        raise StaleInputError(
            f"the {model.name} model was trained on stack {model.inputs.get('stack_hash')}, "
            f"its feature config now gives {config.stack_hash()}: retrain (`kelp train-trees`)"
        )
    return config


def fold_logits(
    models: Sequence[TreeModel], rows: np.ndarray, chunk_pixels: int = CHUNK_PIXELS
) -> np.ndarray:
    """The tree fold ensemble: ``(N,) float32`` mean over ``models`` of ``logit(P(kelp))``.

    One code path for out-of-fold maps (an ensemble of the one fold model that held the tile
    out) and for test tiles (every fold model), so that the same tile through the same model
    gives the same number on both paths; averaging in logit space, as for the CNN.
    """
    total = np.zeros(len(rows), np.float32)
    for model in models:
        total += logit(predict_pixels(model, rows, chunk_pixels))
    return total / np.float32(len(models))


def fold_dirs(run: str | os.PathLike[str], model: str) -> dict[int, Path]:
    """``{k: RUN/tabular/<model>/fold=<k>}`` of every fold folder holding a saved model."""
    root = RunLayout.of(run).tabular / model
    return {
        int(p.parent.name.removeprefix("fold=")): p.parent
        for p in root.glob(f"fold=*/{MODEL_JSON}")
    }


def load_fold_models(
    run: str | os.PathLike[str], model: str, folds: Sequence[int] | None = None
) -> dict[int, TreeModel]:
    """The fold models of ``RUN/tabular/<model>/fold=<k>/`` that made its out-of-fold maps.

    When ``RUN/oof/<model>/manifest.json`` exists (``kelp train-trees`` has finished), the
    ensemble is folds ``0..k-1`` of that manifest, each trained under its key: a fold
    folder left over from another k, or a fold retrained since, is refused.

    Args:
        run: the run folder.
        model: model name.
        folds: which folds; ``None`` = every fold of the current split.

    Returns:
        ``{k: model}`` sorted by k.

    Raises:
        FileNotFoundError: no trained fold (or a requested fold missing); says which command
            trains it.
        StaleInputError: fold models that disagree on their features, or from different
            training settings, or a fold that does not belong to the maps' split; says to
            rerun ``kelp train-trees``.
    """
    layout = RunLayout.of(run)
    root = layout.tabular / model
    rerun = f"rerun `kelp train-trees --models {model}`"
    found = fold_dirs(run, model)
    oof = store_manifest(layout.oof(model))
    if oof is not None and "k" in oof:
        leftover = sorted(f for f in found if f >= oof["k"])
        if leftover:
            raise StaleInputError(
                f"{root}: fold(s) {leftover} are left over from a split with more folds than "
                f"the current {oof['k']}: {rerun} (it removes them)"
            )
    default = sorted(found) if oof is None or "k" not in oof else list(range(oof["k"]))
    wanted = default if folds is None else sorted(folds)
    missing = [k for k in wanted if k not in found]
    if not wanted or missing:
        what = f"fold(s) {missing}" if missing else "no fold"
        raise FileNotFoundError(f"{root}: {what} of a trained {model} model: {rerun}")
    models = {k: load_model(found[k]) for k in wanted}
    first = models[wanted[0]]
    expected_key = oof.get("key") if oof is not None else first.inputs.get("key")
    for k, m in models.items():
        check_feature_names(
            first.feature_names_in_, m.feature_names_in_, f"{model} fold {k} vs fold {wanted[0]}"
        )
        if m.inputs.get("key") != expected_key:
            raise StaleInputError(
                f"{root}/fold={k} was trained with other settings or inputs than the "
                f"{'out-of-fold maps' if oof is not None else f'fold {wanted[0]}'}: {rerun}"
            )
    return models


def predict_tiles(
    records: Iterable[TileRecord],
    run: str | os.PathLike[str],
    model: str,
    *,
    folds: Sequence[int] | None = None,
    band_order: Sequence[str] | None = None,
    store: MapStore | None = None,
    chunk_pixels: int = CHUNK_PIXELS,
) -> Iterator[tuple[str, np.ndarray]]:
    """P(kelp) maps of any tiles (e.g. test tiles) from the fold ensemble of a run.

    Out-of-fold maps of train tiles are written by ``train_trees``; this is for tiles no
    fold held out: every fold model predicts each tile and their logits are averaged
    (:func:`fold_logits`).

    Args:
        records: tiles to predict.
        run: the run folder holding ``tabular/<model>/fold=<k>/``.
        model: model name.
        folds: which fold models to average; ``None`` = the current split's.
        band_order: the files' band order; ``None`` = the run's feature build's.
        store: when given, each tile's mean logit is also written there (kind ``"logit"``),
            and the store's manifest once every tile is done.
        chunk_pixels: pixels per prediction call.

    Yields:
        ``(tile_id, (H, W) float32 probability)`` per tile, in the order of ``records``.

    Raises:
        FileNotFoundError: no trained model (see :func:`load_fold_models`).
        StaleInputError: a tile's channels differ from the models'.
        TileError: an unreadable tile.
    """
    models = load_fold_models(run, model, folds)
    first = next(iter(models.values()))
    config = feature_config_of(first)
    if band_order is None:
        band_order = read_build(RunLayout.of(run).features).band_order
    done: list[str] = []

    def prepare(record: TileRecord) -> tuple[Tile, np.ndarray]:
        tile = load_tile(record, band_order)
        stack, names = build_channels(tile, config)
        check_feature_names(first.feature_names_in_, names, f"tile {tile.tile_id}")
        return tile, pixel_rows(stack)

    # The next tile's stack is computed while the fold models predict this one.
    for tile, rows in prefetched(records, prepare):
        z = fold_logits(list(models.values()), rows, chunk_pixels)
        z = z.reshape(tile.shape)
        if store is not None:
            store.write(tile.tile_id, z, "logit")
        done.append(tile.tile_id)
        yield tile.tile_id, sigmoid(z)
    if store is not None:
        manifest: dict[str, Any] = {
            "kind": "logit",
            "model": model,
            "averaged_folds": sorted(models),
            "stack_hash": first.inputs.get("stack_hash"),
            "feature_names": list(first.feature_names_in_),
            "tiles": sorted(done),
        }
        store.write_manifest(manifest)
