"""Dense prediction: every pixel of a tile's channel stack, by one model or a fold average.

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

from kelp.data.bands import DEFAULT_BAND_ORDER
from kelp.data.catalog import TileRecord
from kelp.data.tile import load_tile
from kelp.features.config import FeatureConfig
from kelp.features.stack import build_channels, channel_names
from kelp.maps import MapStore
from kelp.tabular.data import FeatureMismatchError, check_feature_names
from kelp.tabular.models.base import MODEL_JSON, TreeModel
from kelp.tabular.registry import load_model

__all__ = [
    "feature_config_of",
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
        ValueError: the model folder records no feature config (not made by
            ``kelp train-trees``).
        FeatureMismatchError: the config no longer yields the model's channels or stack
            hash (e.g. the channel code changed since training).
    """
    stored = model.inputs.get("feature_config")
    if stored is None:
        raise ValueError(
            f"this {model.name} model records no feature config: train it with "
            "`kelp train-trees` to predict whole tiles"
        )
    config = FeatureConfig.model_validate(stored)
    check_feature_names(
        model.feature_names_in_, channel_names(config), f"the {model.name} model's feature config"
    )
    if config.stack_hash() != model.inputs.get("stack_hash"):
        raise FeatureMismatchError(
            f"the {model.name} model was trained on stack {model.inputs.get('stack_hash')}, "
            f"its feature config now gives {config.stack_hash()}: retrain (`kelp train-trees`)"
        )
    return config


def load_fold_models(
    run: str | os.PathLike[str], model: str, folds: Sequence[int] | None = None
) -> dict[int, TreeModel]:
    """The fold models of ``RUN/tabular/<model>/fold=<k>/``.

    Args:
        run: the run folder.
        model: model name.
        folds: which folds; ``None`` = every fold trained.

    Returns:
        ``{k: model}`` sorted by k.

    Raises:
        FileNotFoundError: no trained fold (or a requested fold missing); says which command
            trains it.
        FeatureMismatchError: fold models disagree on their features.
        ValueError: fold models from different training settings (a stale fold).
    """
    root = Path(run) / "tabular" / model
    found = {
        int(p.parent.name.removeprefix("fold=")): p.parent
        for p in root.glob(f"fold=*/{MODEL_JSON}")
    }
    wanted = sorted(found) if folds is None else sorted(folds)
    missing = [k for k in wanted if k not in found]
    if not wanted or missing:
        what = f"fold(s) {missing}" if missing else "no fold"
        raise FileNotFoundError(
            f"{root}: {what} of a trained {model} model: run `kelp train-trees --models {model}`"
        )
    models = {k: load_model(found[k]) for k in wanted}
    first = models[wanted[0]]
    for k, m in models.items():
        check_feature_names(
            first.feature_names_in_, m.feature_names_in_, f"{model} fold {k} vs fold {wanted[0]}"
        )
        if m.inputs.get("key") != first.inputs.get("key"):
            raise ValueError(
                f"{root}: folds {wanted[0]} and {k} were trained with different settings or "
                f"inputs; retrain every fold with `kelp train-trees --models {model}`"
            )
    return models


def predict_tiles(
    records: Iterable[TileRecord],
    run: str | os.PathLike[str],
    model: str,
    *,
    folds: Sequence[int] | None = None,
    band_order: Sequence[str] = DEFAULT_BAND_ORDER,
    store: MapStore | None = None,
    chunk_pixels: int = CHUNK_PIXELS,
) -> Iterator[tuple[str, np.ndarray]]:
    """P(kelp) maps of any tiles (e.g. test tiles), averaging the fold models of a run.

    Out-of-fold maps of train tiles are written by ``train_trees``; this is for tiles no
    fold held out: every fold model predicts each tile and the probabilities are averaged.

    Args:
        records: tiles to predict.
        run: the run folder holding ``tabular/<model>/fold=<k>/``.
        model: model name.
        folds: which fold models to average; ``None`` = all trained.
        band_order: the files' band order.
        store: when given, each map is also written there (kind ``"probability"``), and
            the store's manifest once every tile is done.
        chunk_pixels: pixels per prediction call.

    Yields:
        ``(tile_id, (H, W) float32 probability)`` per tile, in the order of ``records``.

    Raises:
        FileNotFoundError: no trained model (see :func:`load_fold_models`).
        FeatureMismatchError: a tile's channels differ from the models'.
        TileError: an unreadable tile.
    """
    models = load_fold_models(run, model, folds)
    first = next(iter(models.values()))
    config = feature_config_of(first)
    done: list[str] = []
    for record in records:
        tile = load_tile(record, band_order)
        stack, names = build_channels(tile, config)
        check_feature_names(first.feature_names_in_, names, f"tile {tile.tile_id}")
        rows = pixel_rows(stack)
        total = np.zeros(len(rows), np.float32)
        for fold_model in models.values():
            total += predict_pixels(fold_model, rows, chunk_pixels)
        prob = (total / len(models)).reshape(tile.shape)
        if store is not None:
            store.write(tile.tile_id, prob, "probability")
        done.append(tile.tile_id)
        yield tile.tile_id, prob
    if store is not None:
        manifest: dict[str, Any] = {
            "kind": "probability",
            "model": model,
            "averaged_folds": sorted(models),
            "stack_hash": first.inputs.get("stack_hash"),
            "feature_names": list(first.feature_names_in_),
            "tiles": sorted(done),
        }
        store.write_manifest(manifest)
