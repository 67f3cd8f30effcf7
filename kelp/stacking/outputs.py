"""What ``RUN/stacking`` holds: the fitted meta-model, the decision, the grid, the manifest.

Written by :func:`kelp.stacking.stack.stack`; :func:`load_meta` reads it back for
``kelp predict``.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

import joblib

from kelp import __version__
from kelp._files import atomic_path
from kelp.artifacts import read_json, read_pickle
from kelp.data.tile import load_tile
from kelp.features.channels import land_mask
from kelp.features.manifest import FeatureBuild
from kelp.layout import RunLayout
from kelp.maps import MapStore
from kelp.metrics import Counts
from kelp.stacking.choice import Choice
from kelp.stacking.config import MetaName, StackConfig
from kelp.stacking.inputs import BaseMaps
from kelp.stacking.meta import MetaModel, feature_names
from kelp.stacking.postprocess import Decision, decision_record
from kelp.stacking.samples import Truth
from kelp.stacking.visual import pick_across_range, prediction_grid

__all__ = ["draw_grid", "load_meta", "stage_manifest", "write_decision", "write_meta"]


def write_meta(
    out: Path,
    final: MetaModel,
    name: MetaName,
    base: BaseMaps,
    nested_choice: dict[int, MetaName] | None = None,
) -> dict[str, Any]:
    """Write ``meta.joblib`` and ``meta.json`` (returned: what the manifest records).

    ``nested_choice``: with ``meta = "best"``, the meta-model that fused each fold.
    """
    with atomic_path(out / "meta.joblib") as tmp:
        joblib.dump(final, tmp)
    meta_record = {
        "meta": name,
        "models": list(base.names),
        "keys": dict(zip(base.names, base.keys, strict=True)),
        "features": feature_names(base.names, final.spatial),
        "learned": final.describe(),
    }
    if nested_choice is not None:
        meta_record["nested_choice"] = {str(f): m for f, m in nested_choice.items()}
    with atomic_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta_record, indent=2))
    return meta_record


def write_decision(out: Path, choice: Choice, n_tiles: int) -> dict[str, Any]:
    """Write ``decision.json`` (returned)."""
    decision = choice.decision
    record = decision_record(decision, choice.counts, n_tiles, choice.nested, choice.per_fold)
    with atomic_path(out / "decision.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return record


def draw_grid(
    store: MapStore,
    tile_ids: list[str],
    records: dict[str, Any],
    truths: dict[str, Truth],
    decision: Decision,
    out: Path,
    n: int,
    band_order: tuple[str, ...],
) -> None:
    """Grid of tiles across the per-tile Dice range (tiles with kelp, true or predicted)."""
    scored = []
    for tile_id in tile_ids:
        truth = truths[tile_id].truth()
        mask = decision.apply(store.read(tile_id), truths[tile_id].land_mask())
        if truth.any() or mask.any():
            scored.append((tile_id, Counts.from_arrays(mask, truth).dice))
    if not scored or n < 1:
        return
    picked = [scored[i][0] for i in pick_across_range([d for _, d in scored], n)]
    tiles = [load_tile(records[t], band_order) for t in picked]
    probs = [store.read(t) for t in picked]
    masks = [decision.apply(p, land_mask(t)) for p, t in zip(probs, tiles, strict=True)]
    prediction_grid(tiles, probs, masks, out)


def stage_manifest(
    key: str,
    config: StackConfig,
    folds_path: Path,
    base: BaseMaps,
    build: FeatureBuild,
    meta_record: dict[str, Any],
    record: dict[str, Any],
    comparison: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """The stage's ``manifest.json``: config, inputs and results."""
    return {
        "stage": "stacking",
        "key": key,
        "kelp_version": __version__,
        "config": config.model_dump(mode="json"),
        "folds": str(folds_path.resolve()),
        "folds_sha256": base.folds_sha256,
        "stack_hash": build.stack_hash,
        "band_order": list(build.band_order),
        "models": list(base.names),
        "base_keys": dict(zip(base.names, base.keys, strict=True)),
        "meta": meta_record,
        "decision": record,
        "comparison": {
            n: {
                "dice_nested": m["nested"]["dice"] if m["nested"] else None,
                "dice_at_0.5": m["overall"]["at_0.5"]["dice"],
                "best_threshold": m["overall"]["best"]["threshold"],
                "dice_at_best": m["overall"]["best"]["dice"],
                "per_fold_dice_at_0.5": {f: e["at_0.5"]["dice"] for f, e in m["per_fold"].items()},
            }
            for n, m in comparison["models"].items()
        },
        "n_tiles": len(base.fold_of),
        "seconds": round(time.perf_counter() - started, 3),
    }


def load_meta(run: str | os.PathLike[str]) -> tuple[MetaModel, dict[str, Any], dict[str, Any]]:
    """The fitted meta-model, its record and the decision of ``RUN/stacking``.

    Raises:
        FileNotFoundError: no stacking yet; says to run ``kelp stack``.
    """
    out = RunLayout.of(run).stacking
    if not (out / "manifest.json").is_file():
        raise FileNotFoundError(f"no stacking in {out}: run `kelp stack` first")
    rerun = "rerun `kelp stack --force`"
    meta: MetaModel = read_pickle(out / "meta.joblib", rerun)
    record = read_json(out / "meta.json", rerun)
    decision = read_json(out / "decision.json", rerun)
    return meta, record, decision
