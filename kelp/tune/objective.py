"""One trial of `kelp tune`: the run's stage, trained in a scratch folder with the trial's values.

The figure is the honest one: out-of-fold global Dice over the run's folds, each fold scored
at the threshold chosen on the other folds (:func:`kelp.oof_report.nested_entry`); for the
stack, the nested Dice of the fused, post-processed masks that ``kelp stack`` reports.
Trees and CNN train fold by fold and report the running figure after each fold (fold 0:
its Dice at its own best threshold, the same optimism for every trial; then the nested
figure of the folds so far), so that a pruner can stop a bad trial after its first folds.

A trial reads the run's dataset, folds file and feature table (a trial whose values change
the table's sampling builds its own table in its scratch folder) and writes only into
``RUN/tune/<study>/trial-<n>/``: never into the run's own model folders.
"""

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kelp._progress import hushed
from kelp.config import validate_config
from kelp.layout import RunLayout
from kelp.oof_report import nested_entry
from kelp.pipeline.config import RunConfig
from kelp.thresholds import ThresholdCounts
from kelp.tune.space import Space

__all__ = ["Trial", "TrialSetup", "apply_values", "run_trial", "running_figure"]

Report = Callable[[float, int], None]
"""``report(value, fold)``: hands the running figure to the pruner; raises to stop."""


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares.

    Attributes:
        values: the run config as read from its TOML (before defaults).
        config: the run config.
        space: the search space.
        folder: the study's folder (``RUN/tune/<study>``): trials' scratch folders go here.
        keep: keep each trial's scratch folder.
    """

    values: Mapping[str, Any]
    config: RunConfig
    space: Space
    folder: Path
    keep: bool = False


@dataclass(frozen=True)
class Trial:
    """What a finished trial gives.

    Attributes:
        value: the nested out-of-fold global Dice.
        per_fold: each fold's Dice at the threshold chosen on the other folds.
        seconds: wall time.
    """

    value: float
    per_fold: dict[str, float]
    seconds: float


def apply_values(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the config's ``values`` with each dotted key of ``overrides`` set."""
    out = _copy(values)
    for key, value in overrides.items():
        table = out
        *parents, last = key.split(".")
        for part in parents:
            table = table.setdefault(part, {})
        table[last] = value
    return out


def _copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def running_figure(counts: Mapping[int, ThresholdCounts]) -> float:
    """The figure after the folds so far: nested Dice, or with one fold its best Dice."""
    nested = nested_entry(counts)
    if nested is not None:
        return float(nested["dice"])
    [only] = counts.values()
    return float(only.best()[1].dice)


def run_trial(
    setup: TrialSetup, number: int, overrides: Mapping[str, Any], report: Report
) -> Trial:
    """Train the target with the trial's values and score it.

    Args:
        setup: the study's settings.
        number: the trial's number (its scratch folder's name).
        overrides: ``{config key: value}`` drawn for this trial.
        report: called after each fold with the running figure.

    Raises:
        ConfigError: the values make an invalid config (the trial fails, the study goes on).
        Whatever the stage raises.
    """
    started = time.perf_counter()
    config = validate_config(
        RunConfig, apply_values(setup.values, overrides), where=f"trial {number}"
    )
    scratch = setup.folder / f"trial-{number:04d}"
    if scratch.exists():  # a trial number is never reused: this is a crashed attempt's
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    try:
        with hushed():
            run = setup.config.layout()
            features = _features(setup, config, scratch)
            layout = RunLayout.of(scratch, run.data, folds=run.folds, features=features)
            if setup.space.target == "stack":
                value, per_fold = _stack(config, run, layout)
            else:
                counts = _folds(setup, config, layout, report)
                nested = nested_entry(counts)
                assert nested is not None  # `kelp tune` refuses k < 2
                value = float(nested["dice"])
                per_fold = {str(k): counts[k].at(t).dice for k, t in _thresholds(nested).items()}
    finally:
        if not setup.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return Trial(value, per_fold, round(time.perf_counter() - started, 2))


def _thresholds(nested: Mapping[str, Any]) -> dict[int, float]:
    return {int(k): float(t) for k, t in nested["thresholds"].items()}


def _features(setup: TrialSetup, config: RunConfig, scratch: Path) -> Path:
    """The run's table, or the trial's own when the trial changes what the table holds."""
    run = setup.config
    if config.section("features") == run.section("features"):
        return run.layout().features
    from kelp.features.build import build_features

    layout = RunLayout.of(scratch, run.layout().data, folds=run.layout().folds)
    build_features(config.features, layout)
    return layout.features


def _folds(
    setup: TrialSetup, config: RunConfig, layout: RunLayout, report: Report
) -> dict[int, ThresholdCounts]:
    from kelp.data.folds_file import read_run_folds

    assignment, catalog = read_run_folds(layout.folds, layout.data)
    counts: dict[int, ThresholdCounts] = {}
    masks = {r.tile_id: r.mask for r in catalog.train}
    for fold in range(assignment.k):
        if setup.space.target == "trees":
            counts[fold] = _tree_fold(config, layout, str(setup.space.model), fold)
        else:
            counts[fold] = _cnn_fold(config, layout, fold, assignment.tiles_in(fold), masks)
        report(running_figure(counts), fold)
    return counts


def _tree_fold(config: RunConfig, layout: RunLayout, model: str, fold: int) -> ThresholdCounts:
    from kelp.tabular.runs import read_metrics
    from kelp.tabular.train import train_trees

    tabular = config.tabular.model_copy(update={"models": (model,)})
    train_trees(tabular, layout, folds=[fold])
    metrics = read_metrics(layout.tree_fold(model, fold))
    assert metrics is not None  # train_trees writes it last, or raises
    return ThresholdCounts.from_dict(metrics["threshold_counts"])


def _cnn_fold(
    config: RunConfig,
    layout: RunLayout,
    fold: int,
    tiles: list[str],
    masks: Mapping[str, os.PathLike[str] | None],
) -> ThresholdCounts:
    from kelp.cnn.train import train_cnn
    from kelp.data.io import read_mask
    from kelp.maps import MapStore, sigmoid

    train_cnn(config.cnn, layout, folds=[fold])
    store = MapStore(layout.oof("cnn"))
    counts = ThresholdCounts()
    for tile_id in tiles:
        mask = masks.get(tile_id)
        if mask is None or not store.has(tile_id):
            continue  # a tile the stage skipped, as in its own report
        counts.update(sigmoid(store.read(tile_id)), np.asarray(read_mask(mask)))
    return counts


def _stack(config: RunConfig, run: RunLayout, layout: RunLayout) -> tuple[float, dict[str, float]]:
    """The stacker on the run's out-of-fold maps (read through links), in the scratch folder."""
    from kelp.stacking.stack import stack

    for part in ("oof", "tabular", "cnn"):
        source = run.root / part
        if source.exists():
            (layout.root / part).symlink_to(source.resolve(), target_is_directory=True)
    # the comparison table is not the objective: only the trial's own meta-model is fit
    meta = config.stacking.meta
    compare = (meta,) if meta != "best" else config.stacking.compare
    stacking = config.stacking.model_copy(update={"compare": compare, "grid_tiles": 0})
    manifest = stack(stacking, layout, force=True)
    decision = manifest["decision"]
    folds = decision["nested"]["per_fold"]
    per_fold = {str(k): float(v["dice"]) for k, v in folds.items()}
    return float(decision["dice"]), per_fold
