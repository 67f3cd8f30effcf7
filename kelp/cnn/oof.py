"""Out-of-fold logits: each train tile predicted by the model of the fold that held it out.

The maps live in ``RUN/oof/cnn/`` as a :class:`~kelp.maps.MapStore` of logits, keyed like
the tree models' ``RUN/oof/<model>/``: the manifest's ``folds`` maps each tile to the fold
whose model predicted it, and ``stack_hash`` / ``folds_sha256`` / ``channels`` say what the
maps were made from, so the stacker can refuse maps that do not belong together.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kelp import __version__
from kelp.cnn.channels import ChannelSource
from kelp.cnn.checkpoint import load_checkpoint
from kelp.cnn.config import CnnConfig
from kelp.cnn.device import Precision
from kelp.cnn.ensemble import Member, predict_tiles
from kelp.cnn.inputs import RunInputs
from kelp.data.catalog import TileRecord
from kelp.data.io import read_mask
from kelp.maps import MapStore
from kelp.metrics import MetricAccumulator

__all__ = ["oof_manifest", "oof_metrics", "predict_oof"]


def predict_oof(
    checkpoint: Path,
    config: CnnConfig,
    records: Sequence[TileRecord],
    source: ChannelSource,
    store: MapStore,
    device: torch.device,
    precision: Precision,
    label: str,
) -> None:
    """Write a fold's best-model logits for every pixel of its held-out tiles.

    The fold ensemble of one model, through :func:`~kelp.cnn.ensemble.predict_tiles` with the
    training autocast: the path ``kelp predict`` takes with every fold model.

    Args:
        checkpoint: the fold's best checkpoint.
        config: channels (checked against the checkpoint), batch size and TTA.
        records: the fold's held-out tiles.
        source: builds their raw channels.
        store: the out-of-fold map store.
        device: where to run.
        precision: autocast settings.
        label: the progress bar's label.
    """
    if not records:
        return
    ckpt = load_checkpoint(checkpoint, config.channels, device)
    for tile_id, logits in predict_tiles(
        [Member(ckpt.model, ckpt.normaliser)],
        records,
        source,
        device,
        config.batch_size,
        config.tta,
        precision,
        label + (" with 8x TTA" if config.tta else ""),
    ):
        store.write(tile_id, logits, "logit")


def oof_manifest(
    config: CnnConfig,
    inputs: RunInputs,
    key: str,
    folds: dict[str, int],
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of ``RUN/oof/cnn`` (what the stacker checks).

    Args:
        config: the training config.
        inputs: the run's checked inputs.
        key: the run key the maps were made under.
        folds: ``{tile_id: fold whose model predicted it}`` for every map.
        metrics: the maps' metrics, when known.

    Returns:
        A JSON-ready dict with ``kind``, ``model``, ``folds``, ``stack_hash``,
        ``folds_sha256``, ``channels``, ``tta``, ``config`` and ``metrics``.
    """
    return {
        "kind": "logit",
        "model": "cnn",
        "stage": "cnn-oof",
        "key": key,
        "kelp_version": __version__,
        "folds": dict(sorted(folds.items())),
        "k": inputs.k,
        "stack_hash": inputs.features["stack_hash"],
        "folds_sha256": inputs.folds_sha256,
        "channels": list(config.channels),
        "tta": config.tta,
        "config": config.model_dump(mode="json"),
        "metrics": metrics,
    }


def oof_metrics(store: MapStore, folds: dict[str, int], inputs: RunInputs) -> dict[str, Any]:
    """Metrics of the out-of-fold logits thresholded at 0 (probability 0.5).

    Args:
        store: the out-of-fold maps.
        folds: ``{tile_id: fold}`` of the maps to score.
        inputs: where the true masks are.

    Returns:
        :meth:`~kelp.metrics.MetricAccumulator.summary` (``dice`` = global Dice) plus
        ``per_fold_dice``.
    """
    overall = MetricAccumulator()
    per_fold: dict[int, MetricAccumulator] = {}
    for tile_id, k in sorted(folds.items()):
        mask_path = inputs.records[tile_id].mask
        if mask_path is None:
            continue
        truth = read_mask(mask_path)
        pred = store.read(tile_id) > 0
        overall.update(pred, truth, tile_id)
        per_fold.setdefault(k, MetricAccumulator()).update(pred, truth, tile_id)
    summary: dict[str, Any] = overall.summary()
    summary["per_fold_dice"] = {
        str(k): acc.global_counts.dice for k, acc in sorted(per_fold.items())
    }
    return summary
