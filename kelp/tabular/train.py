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

import functools
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say, track
from kelp.cluster import current, gpu_resources, run_tasks
from kelp.data.catalog import TileRecord
from kelp.data.folds import FoldAssignment
from kelp.data.folds_file import read_run_folds
from kelp.data.split import FoldPlan, plan_fold
from kelp.devices import ResolvedDevice
from kelp.errors import ConfigError
from kelp.features.manifest import FeatureBuild, read_build
from kelp.layout import RunLayout, short_hash
from kelp.oof_report import build_report, write_report
from kelp.tabular.config import ModelName, TabularConfig
from kelp.tabular.data import FeatureTable, RowSample, positive_tiles, read_rows
from kelp.tabular.devices import resolve_devices
from kelp.tabular.fitting import RowReader, fit_model, fold_summary, predict_fold
from kelp.tabular.importance import write_importance
from kelp.tabular.models.base import TreeModel
from kelp.tabular.predict import fold_dirs
from kelp.tabular.runs import (
    METRICS_JSON,
    fold_counts,
    is_current,
    model_key,
    write_oof_manifest,
)

__all__ = ["select_folds", "train_trees"]


@dataclass(frozen=True)
class _Stage:
    """What every fold of one ``train_trees`` call shares."""

    config: TabularConfig
    layout: RunLayout
    build: FeatureBuild
    assignment: FoldAssignment
    inputs: dict[str, Any]
    devices: dict[ModelName, ResolvedDevice]
    keys: dict[ModelName, str]
    records: dict[str, TileRecord]
    predictable: set[str]


def select_folds(folds: Sequence[int] | None, k: int, source: Path) -> list[int]:
    """The folds to train, in order; ``None`` = all.

    Raises:
        ConfigError: a fold that does not exist in the folds file.
    """
    if folds is None:
        return list(range(k))
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise ConfigError(
            f"fold(s) {bad} do not exist: {source} has k={k} folds, numbered 0..{k - 1}"
        )
    return list(dict.fromkeys(folds))


def _inputs(layout: RunLayout, build: FeatureBuild, assignment: FoldAssignment) -> dict[str, Any]:
    """Check the feature build against the folds file; what every model records."""
    return {
        "feature_config": build.config.model_dump(mode="json"),
        "stack_hash": build.stack_hash,
        "table_hash": build.table_hash,
        "table_seed": build.manifest["seed"],
        "table_tiles": short_hash(build.tiles),
        "folds_sha256": build.check_folds(layout.folds),
        "feature_names": list(build.feature_names),
        "k": assignment.k,
    }


def train_trees(
    config: TabularConfig, layout: RunLayout, *, folds: Sequence[int] | None = None
) -> dict[str, Any]:
    """Train the configured tree models per fold, write OOF maps and the OOF report.

    Args:
        config: models and training settings.
        layout: reads ``layout.folds``, ``layout.features`` and the train tiles of
            ``layout.data`` (again, for dense OOF maps, in the band order of the feature
            build); writes ``RUN/tabular`` and ``RUN/oof/<model>``.
        folds: which folds to train; ``None`` = all.

    Returns:
        The stage manifest (also written to ``RUN/tabular/manifest.json``), with the
        report under ``"report"``.

    Raises:
        FileNotFoundError: no feature build (says to run ``kelp build-features``).
        InputError: a folds file that does not match the dataset, or a fold whose training
            tiles hold no kelp.
        StaleInputError: features built from another folds file or channel code, or table
            columns that differ from the feature names.
        ConfigError: a fold that does not exist.
        DeviceError: ``device="cuda"`` where a model cannot use a GPU.
    """
    started = time.perf_counter()
    build = read_build(layout.features)  # says to run `kelp build-features`
    assignment, catalog = read_run_folds(layout.folds, layout.data)
    inputs = _inputs(layout, build, assignment)
    wanted = select_folds(folds, assignment.k, layout.folds)
    _remove_extra_folds(layout, config.models, assignment.k)
    devices = resolve_devices(config.models, config.device)
    keys = {name: model_key(name, devices[name], config, inputs) for name in config.models}
    records = {r.tile_id: r for r in catalog.train}
    predictable = set(build.tiles)
    stage = _Stage(config, layout, build, assignment, inputs, devices, keys, records, predictable)
    trained: dict[int, list[ModelName]] = {}
    for fold in wanted:
        stale = [
            name
            for name in config.models
            if not is_current(layout, name, fold, keys[name], assignment, predictable)
        ]
        if stale:
            trained[fold] = stale
        else:
            say(f"fold {fold}: {', '.join(config.models)} up to date")
    if trained:
        positives = positive_tiles(layout.features, build.manifest)
        say(f"feature table: {build.manifest['n_rows']} rows of {len(build.tiles)} tiles")
        _train_folds(stage, trained, positives)
    manifest = _manifest(stage, wanted, trained, started)
    with atomic_path(layout.tabular / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def _remove_extra_folds(layout: RunLayout, models: Sequence[ModelName], k: int) -> None:
    for name in models:
        for fold, folder in fold_dirs(layout.root, name).items():
            if fold >= k:  # from a split with more folds: never part of an ensemble
                say(f"removing {folder}: fold {fold} does not exist in {layout.folds}")
                shutil.rmtree(folder)


def _plan(stage: _Stage, fold: int, positives: set[str]) -> tuple[FoldPlan, list[str]]:
    """The fold's split of the training tiles, and its held-out tiles that can be predicted."""
    plan = plan_fold(
        stage.assignment,
        fold,
        {t: t in positives for t, v in sorted(stage.build.manifest["tiles"].items()) if v["rows"]},
        stage.config.stop_fraction,
        stage.config.seed,
    )
    held_out = [t for t in plan.held_out if t in stage.predictable]
    say(
        f"fold {fold}: holding out {len(plan.held_out)} tiles; fitting on "
        f"{len(plan.fit_tiles)} tiles, early stopping on {len(plan.stop_tiles)} tiles of "
        f"areas {', '.join(plan.stop_areas) or '-'}" + (f" ({plan.note})" if plan.note else "")
    )
    return plan, held_out


def _reader(stage: _Stage, fold: int) -> RowReader:
    """Reads a fold's rows from the table, keeping the last two sets read (fit and stop rows
    are shared by the boosted models; the forest reads both as one set)."""
    cache: dict[tuple[int, tuple[str, ...]], tuple[FeatureTable, RowSample]] = {}

    def read(tiles: Sequence[str], stream: int) -> tuple[FeatureTable, RowSample]:
        key = (stream, tuple(sorted(tiles)))
        if key not in cache:
            if len(cache) >= 2:
                cache.pop(next(iter(cache)))
            config = stage.config
            cache[key] = read_rows(
                stage.layout.features, stage.build.manifest, tiles,
                max_rows=config.max_rows, seed=(config.seed, fold, stream),
            )  # fmt: skip
        return cache[key]

    return read


def _train_folds(stage: _Stage, todo: dict[int, list[ModelName]], positives: set[str]) -> None:
    """Train each fold's stale models: one after the other here, or one task per fold on the
    cluster in use (each task writes its fold's files itself)."""
    client = current()
    if client is None:
        for fold, stale in todo.items():
            _train_fold(stage, fold, stale, positives)
        return
    cuda = [name for name in stage.config.models if stage.devices[name] == "cuda"]
    resources = gpu_resources(client, ", ".join(cuda)) if cuda else None
    work = functools.partial(_fold_task, stage, positives)
    tasks = run_tasks(work, list(todo.items()), resources=resources)
    for (fold, stale), future in track(tasks, "training folds on the cluster", total=len(todo)):
        future.result()  # a fold's error stops the stage, as it does here
        say(f"fold {fold}: {', '.join(stale)} trained on the cluster")


def _fold_task(stage: _Stage, positives: set[str], todo: tuple[int, list[ModelName]]) -> int:
    """One fold on a cluster worker (its messages go to the worker's log)."""
    fold, stale = todo
    _train_fold(stage, fold, stale, positives)
    return fold


def _train_fold(stage: _Stage, fold: int, stale: list[ModelName], positives: set[str]) -> None:
    """Fit the ``stale`` models of ``fold``, write their OOF maps, then their metrics."""
    layout, keys = stage.layout, stage.keys
    plan, held_out = _plan(stage, fold, positives)
    read = _reader(stage, fold)
    models: dict[ModelName, TreeModel] = {}
    infos: dict[ModelName, dict[str, Any]] = {}
    for name in stale:
        folder = layout.tree_fold(name, fold)
        (folder / METRICS_JSON).unlink(missing_ok=True)  # the fold is redone
        model, info = fit_model(name, stage.devices[name], plan, read, stage.config)
        model.save(folder, {**stage.inputs, "key": keys[name], "fold": fold})
        write_importance(
            folder, model.feature_names_in_, model.feature_importances_, f"{name}, fold {fold}"
        )
        say(
            f"fold {fold}: {name} trained in {info['train_seconds']:.1f} s on {info['device']}"
            f" ({info['best_iteration']} rounds)"
        )
        models[name], infos[name] = model, info
    counts, seconds, pixels = predict_fold(
        fold, models, held_out, stage.records, stage.build, layout, stage.config
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
            "oof": fold_summary(counts[name]),
            "threshold_counts": counts[name].to_dict(),
        }
        with atomic_path(layout.tree_fold(name, fold) / METRICS_JSON) as tmp:
            tmp.write_text(json.dumps(metrics, indent=2))


def _manifest(
    stage: _Stage, wanted: list[int], trained: dict[int, list[ModelName]], started: float
) -> dict[str, Any]:
    """Write the OOF manifests and the report; the stage manifest."""
    config, layout, keys, assignment = stage.config, stage.layout, stage.keys, stage.assignment
    oof = {
        name: write_oof_manifest(
            layout, name, keys[name], assignment, stage.inputs, stage.predictable
        )
        for name in config.models
    }
    report = build_report(
        {name: fold_counts(layout, name, keys[name], assignment.k) for name in config.models}
    )
    write_report(layout.tabular, report)
    return {
        "stage": "tabular",
        "kelp_version": __version__,
        "data": str(layout.data.resolve()),
        "folds_file": str(layout.folds.resolve()),
        "features": str(layout.features.resolve()),
        "config": config.model_dump(mode="json"),
        "devices": stage.devices,
        "keys": keys,
        "inputs": {k: v for k, v in stage.inputs.items() if k != "feature_config"},
        "folds_requested": wanted,
        "trained": {str(f): names for f, names in trained.items()},
        "oof_complete": {name: m["complete"] for name, m in oof.items()},
        "report": report,
        "seconds": round(time.perf_counter() - started, 3),
    }
