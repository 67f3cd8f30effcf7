"""What `kelp train-cnn` writes about itself: run key, checkpoint facts, fold and stage JSON.

- :func:`run_key`: what a fold's weights depend on; a fold finished under the same key is
  not retrained, a ``last/`` checkpoint under another is not resumed.
- :func:`checkpoint_meta`: the feature and training facts in a checkpoint's ``config.json``.
- :func:`fold_summary`: ``RUN/cnn/fold=<k>/fold.json``, the tiles a fold fitted, validated
  on and held out and its best epoch.
- :func:`stage_manifest`: ``RUN/cnn/manifest.json``, the whole stage.
"""

import math
import time
from typing import Any

import torch

from kelp import __version__
from kelp._provenance import git_state
from kelp.artifacts import read_marker
from kelp.cnn.config import CnnConfig
from kelp.cnn.fold import Progress, TrainContext
from kelp.cnn.history import EpochRow
from kelp.cnn.inputs import RunInputs
from kelp.cnn.normalise import Normaliser
from kelp.data.split import FoldPlan
from kelp.layout import short_hash

__all__ = ["checkpoint_meta", "fold_summary", "run_key", "stage_manifest"]


def run_key(config: CnnConfig, inputs: RunInputs) -> str:
    """What a fold's weights depend on: config, channel code, folds, tiles and statistics."""
    return short_hash(
        [
            config.training_key(),
            inputs.features["stack_hash"],
            inputs.folds_sha256,
            sorted(inputs.records),
            inputs.features.get("normalisation"),
        ]
    )


def checkpoint_meta(
    config: CnnConfig, inputs: RunInputs, key: str, fold: int, row: EpochRow | None
) -> dict[str, Any]:
    """The ``features`` and ``training`` facts of fold ``fold``'s checkpoint after ``row``."""
    return {
        "features": {
            "config": inputs.feature_config.model_dump(mode="json"),
            "stack_hash": inputs.features["stack_hash"],
            "band_order": list(inputs.band_order),
        },
        "training": {
            "config": config.model_dump(mode="json"),
            "key": key,
            "fold": fold,
            "folds_sha256": inputs.folds_sha256,
            "tta": config.tta,
            "epoch": row.epoch if row else 0,
            "val_dice": row.val_dice if row and not math.isnan(row.val_dice) else None,
            "val_loss": row.val_loss if row and not math.isnan(row.val_loss) else None,
        },
    }


def fold_summary(
    key: str, k: int, plan: FoldPlan, progress: Progress, normaliser: Normaliser
) -> dict[str, Any]:
    """``fold.json`` of fold ``k``, finished."""
    best = progress.rows[progress.best_epoch - 1] if progress.best_epoch else None
    return {
        "key": key,
        "fold": k,
        "train_tiles": len(plan.fit_tiles),
        "val_tiles": len(plan.stop_tiles),
        "selected_by": "inner validation global Dice" if plan.stop_tiles else "last epoch",
        "fit_tile_ids": list(plan.fit_tiles),
        "val_tile_ids": list(plan.stop_tiles),
        "val_areas": list(plan.stop_areas),
        "held_out_tile_ids": list(plan.held_out),
        "note": plan.note,
        "best_epoch": progress.best_epoch,
        "best_val_dice": best.val_dice if best and not math.isnan(best.val_dice) else None,
        "best_val_loss": best.val_loss if best and not math.isnan(best.val_loss) else None,
        "epochs_run": progress.epoch,
        "stopped_early": progress.stopped_early,
        "seconds": round(progress.seconds, 3),
        "dead_channels": normaliser.dead_channels,
    }


def stage_manifest(
    ctx: TrainContext,
    oof_folds: dict[str, int],
    metrics: dict[str, Any] | None,
    started: float,
) -> dict[str, Any]:
    """``RUN/cnn/manifest.json``: config, inputs, the folds finished under this key, OOF."""
    import segmentation_models_pytorch as smp

    folds = {}
    for k in range(ctx.inputs.k):
        summary = read_marker(ctx.layout.cnn_fold(k) / "fold.json")
        if summary is not None and summary.get("key") == ctx.key:
            folds[str(k)] = summary
    return {
        "stage": "cnn",
        "key": ctx.key,
        "kelp_version": __version__,
        "versions": {"torch": torch.__version__, "segmentation_models_pytorch": smp.__version__},
        "git_commit": git_state()["commit"],
        "config": ctx.config.model_dump(mode="json"),
        "inputs": {
            "data": str(ctx.inputs.data.resolve()),
            "folds": str(ctx.inputs.folds_path.resolve()),
            "folds_sha256": ctx.inputs.folds_sha256,
            "features": str(ctx.inputs.features_dir.resolve()),
            "stack_hash": ctx.inputs.features["stack_hash"],
        },
        "device": ctx.device.type,
        "precision": ctx.precision.name,
        "k": ctx.inputs.k,
        "folds": folds,
        "oof": {
            "dir": str(ctx.layout.oof("cnn")),
            "tiles": len(oof_folds),
            "metrics": metrics,
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
