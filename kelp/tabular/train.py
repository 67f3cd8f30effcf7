"""`kelp train-trees`: per-fold tree models, dense out-of-fold maps and the OOF report.

Reads ``RUN/folds.csv`` and ``RUN/features/`` (``kelp data folds``, ``kelp build-features``)
and writes::

    RUN/tabular/<model>/fold=<k>/   model file (.txt/.ubj/.cbm) + model.json,
                                    metrics.json, importance.csv, importance.png
    RUN/oof/<model>/                <tile_id>.npy P(kelp) per train tile + manifest.json
    RUN/tabular/report.json, report.csv, manifest.json

For each requested fold k and model: train on the other folds' rows, early-stop on an
inner area-grouped part of them (``kelp.data.split``), save, then predict every pixel of
each fold-k tile from its full channel stack. ``metrics.json`` is written last and carries
a key of everything that determines the result (model parameters, training settings,
feature table, folds file, versions): a rerun skips folds whose key and maps are current,
and a fold interrupted half-way is simply redone (``kelp.tabular.runs``).
"""

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say, track
from kelp.data.catalog import TileRecord, open_catalog
from kelp.data.folds import FoldAssignment, read_folds
from kelp.data.split import FoldPlan, plan_fold
from kelp.data.tile import load_tile
from kelp.devices import ResolvedDevice
from kelp.features.manifest import FeatureBuild, read_build
from kelp.features.stack import build_channels
from kelp.maps import sigmoid
from kelp.oof_report import build_report, write_report
from kelp.tabular.config import ModelName, TabularConfig
from kelp.tabular.data import FeatureTable, check_feature_names, load_table
from kelp.tabular.devices import resolve_devices
from kelp.tabular.importance import write_importance
from kelp.tabular.models.base import TreeModel
from kelp.tabular.predict import fold_dirs, fold_logits, pixel_rows
from kelp.tabular.registry import model_class
from kelp.tabular.runs import (
    METRICS_JSON,
    RunPaths,
    fold_counts,
    is_current,
    model_key,
    short_hash,
    write_oof_manifest,
)
from kelp.thresholds import ThresholdCounts

__all__ = ["select_folds", "train_trees"]


def select_folds(folds: Sequence[int] | None, k: int, source: Path) -> list[int]:
    """The folds to train, in order; ``None`` = all.

    Raises:
        ValueError: a fold that does not exist in the folds file.
    """
    if folds is None:
        return list(range(k))
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise ValueError(
            f"fold(s) {bad} do not exist: {source} has k={k} folds, numbered 0..{k - 1}"
        )
    return list(dict.fromkeys(folds))


def _inputs(paths: RunPaths, build: FeatureBuild, assignment: FoldAssignment) -> dict[str, Any]:
    """Check the feature build against the folds file; what every model records."""
    return {
        "feature_config": build.config.model_dump(mode="json"),
        "stack_hash": build.stack_hash,
        "table_hash": build.table_hash,
        "table_seed": build.manifest["seed"],
        "table_tiles": short_hash(build.tiles),
        "folds_sha256": build.check_folds(paths.folds),
        "feature_names": list(build.feature_names),
        "k": assignment.k,
    }


def _fit(
    name: ModelName,
    device: ResolvedDevice,
    plan: FoldPlan,
    table: FeatureTable,
    config: TabularConfig,
) -> tuple[TreeModel, dict[str, Any]]:
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
    fit_rows = table.rows_of(fit_tiles)
    weight = table.weight if config.sample_weight else None
    eval_set = None
    if stopping:
        stop_rows = table.rows_of(plan.stop_tiles)
        eval_set = (
            table.features[stop_rows],
            table.label[stop_rows],
            None if weight is None else weight[stop_rows],
        )
    started = time.perf_counter()
    model.fit(
        table.features[fit_rows],
        table.label[fit_rows],
        None if weight is None else weight[fit_rows],
        eval_set=eval_set,
        feature_names=table.feature_names,
    )
    info = {
        "fit_tiles": list(fit_tiles),
        "stop_tiles": list(plan.stop_tiles) if stopping else [],
        "stop_areas": list(plan.stop_areas) if stopping else [],
        "early_stopping": (
            "on" if stopping else plan.note or "off: this model does not early-stop"
        ),
        "fit_rows": int(fit_rows.sum()),
        "fit_kelp_rows": int(table.label[fit_rows].sum()),
        "stop_rows": 0 if eval_set is None else len(eval_set[1]),
        "best_iteration": model.best_iteration_,
        "train_seconds": round(time.perf_counter() - started, 3),
        "device": device,
    }
    return model, info


def _predict_fold(
    fold: int,
    models: Mapping[ModelName, TreeModel],
    tiles: Sequence[str],
    records: Mapping[str, TileRecord],
    build: FeatureBuild,
    paths: RunPaths,
    config: TabularConfig,
) -> tuple[dict[ModelName, ThresholdCounts], dict[ModelName, float], int]:
    counts = {name: ThresholdCounts() for name in models}
    seconds = dict.fromkeys(models, 0.0)
    stores = {name: paths.oof(name) for name in models}
    names = next(iter(models.values())).feature_names_in_
    pixels = 0
    for tile_id in track(tiles, f"fold {fold}: out-of-fold maps"):
        tile = load_tile(records[tile_id], build.band_order)
        if tile.mask is None:
            raise ValueError(f"train tile {tile_id} has no kelp mask")
        stack, stack_names = build_channels(tile, build.config)
        check_feature_names(names, stack_names, f"tile {tile_id}")
        rows = pixel_rows(stack)
        pixels += len(rows)
        for name, model in models.items():
            started = time.perf_counter()
            # The fold ensemble of one: exactly what `kelp predict` computes per fold model.
            z = fold_logits([model], rows, config.chunk_pixels).reshape(tile.shape)
            seconds[name] += time.perf_counter() - started
            stores[name].write(tile_id, z, "logit")
            counts[name].update(sigmoid(z), tile.mask)
    return counts, seconds, pixels


def train_trees(
    data: str | os.PathLike[str],
    run: str | os.PathLike[str],
    config: TabularConfig | None = None,
    *,
    folds: Sequence[int] | None = None,
    folds_file: str | os.PathLike[str] | None = None,
    features: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train the configured tree models per fold, write OOF maps and the OOF report.

    Args:
        data: dataset folder (the train tiles are read again for dense OOF maps).
        run: run folder.
        config: models and training settings; defaults when ``None``.
        folds: which folds to train; ``None`` = all.
        folds_file: folds CSV; default ``RUN/folds.csv``.
        features: feature build folder; default ``RUN/features`` (the tiles are read in
            the band order it was built with).

    Returns:
        The stage manifest (also written to ``RUN/tabular/manifest.json``), with the
        report under ``"report"``.

    Raises:
        FileNotFoundError: no feature build (says to run ``kelp build-features``).
        InputError: a folds file that does not match the dataset.
        StaleInputError: features built from another folds file or channel code.
        StaleInputError: table columns that differ from the feature names.
        ValueError: a fold that does not exist.
        InputError: a fold whose training tiles hold no kelp.
        DeviceError: ``device="cuda"`` where a model cannot use a GPU.
    """
    config = config or TabularConfig()
    started = time.perf_counter()
    paths = RunPaths.of(data, run, folds_file, features)
    build = read_build(paths.features)  # says to run `kelp build-features`
    catalog = open_catalog(paths.data)
    assignment = read_folds(paths.folds, catalog)
    inputs = _inputs(paths, build, assignment)
    wanted = select_folds(folds, assignment.k, paths.folds)
    for name in config.models:
        for k, folder in fold_dirs(paths.run, name).items():
            if k >= assignment.k:  # from a split with more folds: never part of an ensemble
                say(f"removing {folder}: fold {k} does not exist in {paths.folds}")
                shutil.rmtree(folder)
    devices = resolve_devices(config.models, config.device)
    keys = {name: model_key(name, devices[name], config, inputs) for name in config.models}
    records = {r.tile_id: r for r in catalog.train}
    predictable = set(build.tiles)
    table: FeatureTable | None = None
    trained: dict[int, list[ModelName]] = {}
    for fold in wanted:
        stale = [
            name
            for name in config.models
            if not is_current(paths, name, fold, keys[name], assignment, predictable)
        ]
        if not stale:
            say(f"fold {fold}: {', '.join(config.models)} up to date")
            continue
        if table is None:
            table = load_table(paths.features, build.manifest)
            say(f"feature table: {len(table.label)} rows of {len(table.tiles)} tiles")
        positives = table.positive_tiles()
        plan = plan_fold(
            assignment,
            fold,
            {t: t in positives for t in table.tiles},
            config.stop_fraction,
            config.seed,
        )
        held_out = [t for t in plan.held_out if t in predictable]
        say(
            f"fold {fold}: holding out {len(plan.held_out)} tiles; fitting on "
            f"{len(plan.fit_tiles)} tiles, early stopping on {len(plan.stop_tiles)} tiles of "
            f"areas {', '.join(plan.stop_areas) or '-'}" + (f" ({plan.note})" if plan.note else "")
        )
        models: dict[ModelName, TreeModel] = {}
        infos: dict[ModelName, dict[str, Any]] = {}
        for name in stale:
            folder = paths.model_dir(name, fold)
            (folder / METRICS_JSON).unlink(missing_ok=True)  # the fold is redone
            model, info = _fit(name, devices[name], plan, table, config)
            model.save(folder, {**inputs, "key": keys[name], "fold": fold})
            write_importance(
                folder, table.feature_names, model.feature_importances_, f"{name}, fold {fold}"
            )
            say(
                f"fold {fold}: {name} trained in {info['train_seconds']:.1f} s on {info['device']}"
                f" ({info['best_iteration']} rounds)"
            )
            models[name], infos[name] = model, info
        counts, seconds, pixels = _predict_fold(
            fold, models, held_out, records, build, paths, config
        )
        for name in stale:
            metrics = {
                "model": name,
                "fold": fold,
                "key": keys[name],
                "held_out": list(plan.held_out),
                "held_out_predicted": held_out,
                **infos[name],
                "predict_seconds": round(seconds[name], 3),
                "predicted_pixels": pixels,
                "oof": _fold_summary(counts[name]),
                "threshold_counts": counts[name].to_dict(),
            }
            with atomic_path(paths.model_dir(name, fold) / METRICS_JSON) as tmp:
                tmp.write_text(json.dumps(metrics, indent=2))
        trained[fold] = stale
    oof = {
        name: write_oof_manifest(paths, name, keys[name], assignment, inputs, predictable)
        for name in config.models
    }
    report = build_report(
        {name: fold_counts(paths, name, keys[name], assignment.k) for name in config.models}
    )
    write_report(paths.run / "tabular", report)
    manifest = {
        "stage": "tabular",
        "kelp_version": __version__,
        "data": str(paths.data.resolve()),
        "folds_file": str(paths.folds.resolve()),
        "features": str(paths.features.resolve()),
        "config": config.model_dump(mode="json"),
        "devices": devices,
        "keys": keys,
        "inputs": {k: v for k, v in inputs.items() if k != "feature_config"},
        "folds_requested": wanted,
        "trained": {str(f): names for f, names in trained.items()},
        "oof_complete": {name: m["complete"] for name, m in oof.items()},
        "report": report,
        "seconds": round(time.perf_counter() - started, 3),
    }
    with atomic_path(paths.run / "tabular" / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def _fold_summary(counts: ThresholdCounts) -> dict[str, Any]:
    at_half = counts.at(0.5)
    threshold, best = counts.best()
    return {
        "dice_at_0.5": at_half.dice,
        "best_threshold": threshold,
        "dice_at_best": best.dice,
        "n_tiles": counts.n_tiles,
    }
