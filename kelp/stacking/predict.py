"""`kelp predict`: masks for new tiles, each tile on its own, with the stacked models.

For each tile, independently: its channel stack (computed once), each tree model's
probability (the mean of its fold models), the CNN's logit (the mean of its fold models,
with TTA as its out-of-fold logits were made), the meta-model of ``kelp stack``, the
post-processing decision chosen on out-of-fold data, and ``<tile_id>_kelp.tif`` (uint8 0/1,
the input's shape and transform) in ``RUN/predictions/``; then ``submission.tar``.

Resumable: the folder carries the key of what makes its masks (models, meta-model,
decision); a rerun with the same key skips tiles already written, another key starts over.
"""

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say, track
from kelp.data.catalog import DatasetError, Problem, scan_catalog
from kelp.data.io import TileError, pack_submission, write_mask
from kelp.data.tile import Tile, load_tile
from kelp.devices import Device
from kelp.features.build import read_manifest
from kelp.features.channels import land_mask
from kelp.features.config import FeatureConfig
from kelp.features.stack import build_channels
from kelp.maps import logit
from kelp.stacking.postprocess import Decision
from kelp.stacking.stack import fused_probability, load_meta

__all__ = ["BaseEnsemble", "predict"]

OnError = Literal["fail", "skip"]
_PARTIAL = ".partial.json"


class BaseEnsemble:
    """The base models of a run, predicting one tile at a time from one channel stack.

    Args:
        run: the run folder.
        names: base model names in the meta-model's order (``cnn`` and tree names).
        tta: CNN test-time augmentation; ``None`` = as its out-of-fold logits were made.
        device: where the CNN runs.
    """

    def __init__(
        self, run: Path, names: Sequence[str], tta: bool | None = None, device: Device = "auto"
    ) -> None:
        from kelp.tabular.data import check_feature_names
        from kelp.tabular.predict import load_fold_models

        features = read_manifest(run / "features")
        self.config = FeatureConfig.model_validate(features["config"])
        self.band_order = tuple(features["band_order"])
        self.feature_names = list(features["feature_names"])
        self.names = tuple(names)
        self.trees = {}
        for name in self.names:
            if name == "cnn":
                continue
            models = load_fold_models(run, name)
            for model in models.values():
                check_feature_names(model.feature_names_in_, self.feature_names, f"{name} model")
            self.trees[name] = list(models.values())
        self.cnn = _CnnEnsemble(run, self.feature_names, tta, device) if "cnn" in names else None

    def logits(self, tile: Tile) -> np.ndarray:
        """``(M, H, W) float32`` logits of every base model, in :attr:`names` order."""
        from kelp.tabular.predict import pixel_rows, predict_pixels

        stack, _ = build_channels(tile, self.config)
        rows = None
        out = []
        for name in self.names:
            if name == "cnn" and self.cnn is not None:
                out.append(self.cnn.logits(stack, tile.tile_id))
                continue
            rows = pixel_rows(stack) if rows is None else rows
            prob = np.mean([predict_pixels(m, rows) for m in self.trees[name]], axis=0)
            out.append(logit(prob.reshape(tile.shape)))
        return np.stack(out)

    def describe(self) -> dict[str, Any]:
        """What the ensemble is made of, for the manifest and the key."""
        return {
            "trees": {n: len(ms) for n, ms in self.trees.items()},
            "cnn": self.cnn.describe() if self.cnn is not None else None,
        }


class _CnnEnsemble:
    """The CNN's fold checkpoints, fed the CNN's channels taken from the full stack."""

    def __init__(
        self, run: Path, feature_names: Sequence[str], tta: bool | None, device: Device
    ) -> None:
        from kelp.cnn.checkpoint import load_checkpoint
        from kelp.cnn.device import resolve_device
        from kelp.cnn.inputs import CnnLayout
        from kelp.cnn.tta import D4, IDENTITY
        from kelp.maps import store_manifest

        layout = CnnLayout(run)
        folds = layout.trained_folds()
        self.device = resolve_device(device)
        self.checkpoints = [load_checkpoint(layout.best(k), None, self.device) for k in folds]
        channels = self.checkpoints[0].channels
        self.index = [list(feature_names).index(c) for c in channels]
        oof = store_manifest(layout.oof) or {}
        self.tta = bool(oof.get("tta", False)) if tta is None else tta
        self.transforms = D4 if self.tta else IDENTITY
        self.folds = folds

    def logits(self, stack: np.ndarray, tile_id: str) -> np.ndarray:
        import torch

        from kelp.cnn.tta import tta_logits

        raw = stack[self.index]
        total = np.zeros(stack.shape[1:], np.float32)
        with torch.inference_mode():
            for ckpt in self.checkpoints:
                x = torch.from_numpy(ckpt.normaliser(raw, f"tile {tile_id}")[None]).to(self.device)
                total += tta_logits(ckpt.model, x, self.transforms)[0].cpu().numpy()
        return total / len(self.checkpoints)

    def describe(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "tta": self.tta,
            "checkpoints": [str(c.path) for c in self.checkpoints],
        }


def _key(run: Path, record: dict[str, Any], decision: dict[str, Any], tta: bool | None) -> str:
    meta_bytes = (run / "stacking" / "meta.joblib").read_bytes()
    payload = [hashlib.sha256(meta_bytes).hexdigest(), record, decision, tta, __version__]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def predict(
    data: str | os.PathLike[str],
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    on_error: OnError = "fail",
    tta: bool | None = None,
    device: Device = "auto",
) -> dict[str, Any]:
    """Write a mask per test tile (tiles without a kelp mask) and ``submission.tar``.

    Args:
        data: a dataset folder (Kelp Wanted layout or a plain folder of tiles).
        run: the run folder with ``stacking/`` and the base models.
        out: where the masks go; ``RUN/predictions`` by default.
        on_error: ``fail`` stops at a bad tile (masks written so far stay); ``skip`` leaves
            it out, lists it in the manifest and still packs the others.
        tta: CNN test-time augmentation; ``None`` = as for its out-of-fold logits.
        device: where the CNN runs.

    Returns:
        The manifest written to ``OUT/manifest.json``.

    Raises:
        FileNotFoundError: no stacking or base model (says which command to run).
        DatasetError: an unreadable dataset or tile with ``on_error="fail"``.
        ValueError: no test tile in ``data``.
    """
    started = time.perf_counter()
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    run = Path(run)
    meta, record, decision_record = load_meta(run)
    decision = Decision(
        threshold=decision_record["threshold"],
        land_mask=decision_record["land_mask"],
        min_area=decision_record["min_area"],
        morphology=decision_record["morphology"],
    )
    catalog, problems = scan_catalog(data)
    if problems and on_error == "fail":
        raise DatasetError(problems)
    skipped = [{"tile_id": p.tile_id, "path": str(p.path), "reason": p.message} for p in problems]
    records = catalog.test
    if not records:
        raise ValueError(f"no test tiles (tiles without a kelp mask) in {data}")
    ensemble = BaseEnsemble(run, record["models"], tta, device)
    out_dir = Path(out) if out is not None else run / "predictions"
    key = _key(run, record, decision_record, tta)
    _open(out_dir, key)
    written = []
    for rec in track(records, f"predicting {len(records)} tiles"):
        path = out_dir / f"{rec.tile_id}_kelp.tif"
        if path.is_file():
            written.append(path)
            continue
        try:
            tile = load_tile(rec, ensemble.band_order)
        except TileError as error:
            if on_error == "fail":
                raise DatasetError([Problem(error.path, error.problem, rec.tile_id)]) from None
            skipped.append(
                {"tile_id": rec.tile_id, "path": str(error.path), "reason": error.problem}
            )
            continue
        land = land_mask(tile)
        prob = fused_probability(meta, ensemble.logits(tile), land)
        write_mask(path, decision.apply(prob, land), tile.transform)
        written.append(path)
    tar = pack_submission(written, out_dir / "submission.tar")
    seconds = time.perf_counter() - started
    manifest = {
        "stage": "predict",
        "key": key,
        "kelp_version": __version__,
        "data": str(Path(data).resolve()),
        "n_tiles": len(written),
        "skipped": skipped,
        "models": list(record["models"]),
        "meta": record["meta"],
        "decision": decision_record,
        "ensemble": ensemble.describe(),
        "submission": str(tar),
        "seconds": round(seconds, 3),
    }
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    (out_dir / _PARTIAL).unlink(missing_ok=True)
    if skipped:
        say(f"[yellow]warning:[/yellow] {len(skipped)} tile(s) skipped, missing from {tar}")
    say(f"{len(written)} masks in {out_dir}, packed into {tar} ({seconds:.1f} s)")
    return manifest


def _open(out_dir: Path, key: str) -> None:
    """Keep masks made under ``key``; remove masks (and the tar) made under another."""
    out_dir.mkdir(parents=True, exist_ok=True)
    held = None
    for marker in (out_dir / "manifest.json", out_dir / _PARTIAL):
        if marker.is_file():
            held = json.loads(marker.read_text()).get("key")
            break
    if held != key:
        stale = list(out_dir.glob("*_kelp.tif"))
        if stale:
            say(f"{out_dir}: removing {len(stale)} mask(s) made with other models or decision")
        for path in [*stale, out_dir / "submission.tar", out_dir / "manifest.json"]:
            path.unlink(missing_ok=True)
    with atomic_path(out_dir / _PARTIAL) as tmp:
        tmp.write_text(json.dumps({"key": key}))
