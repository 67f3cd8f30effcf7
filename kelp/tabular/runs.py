"""The run folder of the tree stage: where things go and which folds are current.

Each trained fold's ``metrics.json`` carries a key of everything that determines its
models and maps (parameters, training settings, feature table, folds file, versions).
A fold is current when its key matches and all its out-of-fold maps exist; the OOF map
manifest lists exactly the current folds' tiles, and maps of any other fold are deleted,
so a map folder never mixes runs.
"""

from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from kelp import __version__
from kelp.artifacts import read_marker
from kelp.data.folds import FoldAssignment
from kelp.devices import ResolvedDevice
from kelp.layout import RunLayout, short_hash
from kelp.maps import MapStore
from kelp.tabular.config import ModelName, TabularConfig
from kelp.tabular.registry import model_class
from kelp.thresholds import ThresholdCounts

__all__ = [
    "METRICS_JSON",
    "fold_counts",
    "is_current",
    "model_key",
    "read_metrics",
    "write_oof_manifest",
]

METRICS_JSON = "metrics.json"


def model_key(
    name: ModelName, device: ResolvedDevice, config: TabularConfig, inputs: Mapping[str, Any]
) -> str:
    """The key of everything that determines a model's folds (threads excluded)."""
    cls = model_class(name)
    return short_hash(
        {
            "model": name,
            "library": metadata.version(cls.library),
            "kelp": __version__,
            "defaults": cls.defaults,
            "overrides": config.params.get(name, {}),
            "device": device,
            "training": config.model_dump(
                include={
                    "max_rounds",
                    "early_stopping_rounds",
                    "stop_fraction",
                    "sample_weight",
                    "seed",
                }
            )
            # set only when capped: the keys of uncapped models stay those of kelp 0.1
            | ({"max_rows": config.max_rows} if config.max_rows is not None else {}),
            "inputs": {k: v for k, v in inputs.items() if k != "feature_config"},
        }
    )


def read_metrics(folder: Path) -> dict[str, Any] | None:
    """A fold's ``metrics.json``, or ``None`` when the fold has not finished."""
    return read_marker(folder / METRICS_JSON)  # damaged: the fold is redone


def is_current(
    layout: RunLayout,
    name: ModelName,
    fold: int,
    key: str,
    assignment: FoldAssignment,
    predictable: set[str],
) -> bool:
    """Whether fold ``fold`` of ``name`` was trained with ``key`` and all its maps exist."""
    metrics = read_metrics(layout.tree_fold(name, fold))
    if metrics is None or metrics["key"] != key:
        return False
    store = MapStore(layout.oof(name))
    held = [t for t in assignment.tiles_in(fold) if t in predictable]
    return all(store.has(t) for t in held)


def write_oof_manifest(
    layout: RunLayout,
    name: ModelName,
    key: str,
    assignment: FoldAssignment,
    inputs: Mapping[str, Any],
    predictable: set[str],
) -> dict[str, Any]:
    """Rebuild ``RUN/oof/<model>/manifest.json`` from the current folds' metrics."""
    fold_of: dict[str, int] = {}
    current: list[int] = []
    for fold in range(assignment.k):
        metrics = read_metrics(layout.tree_fold(name, fold))
        if metrics is not None and metrics["key"] == key:
            current.append(fold)
            fold_of.update(dict.fromkeys(metrics["held_out_predicted"], fold))
    store = MapStore(layout.oof(name))
    for tile_id in store.tile_ids():
        if tile_id not in fold_of:
            store.path(tile_id).unlink()  # from a stale run: never to be trusted
    expected = sorted(t for t in assignment.tile_ids if t in predictable)
    missing = [t for t in expected if t not in fold_of]
    manifest = {
        "kind": "logit",
        "model": name,
        "key": key,
        "folds": dict(sorted(fold_of.items())),
        "folds_done": current,
        "k": assignment.k,
        "complete": not missing,
        "missing": missing,
        "skipped": sorted(set(assignment.tile_ids) - predictable),
        "stack_hash": inputs["stack_hash"],
        "table_hash": inputs["table_hash"],
        "folds_sha256": inputs["folds_sha256"],
        "feature_names": inputs["feature_names"],
        "kelp_version": __version__,
    }
    store.write_manifest(manifest)
    return manifest


def fold_counts(layout: RunLayout, name: ModelName, key: str, k: int) -> dict[int, ThresholdCounts]:
    """The threshold counts of every current fold of model ``name``."""
    found = {}
    for fold in range(k):
        metrics = read_metrics(layout.tree_fold(name, fold))
        if metrics is not None and metrics["key"] == key:
            found[fold] = ThresholdCounts.from_dict(metrics["threshold_counts"])
    return found
