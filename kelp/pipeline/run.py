"""`kelp run`: every stage in one run folder, skipping what is up to date.

Stages, in order: ``folds`` (check the data, group areas, split) -> ``features`` (the
Parquet table) -> ``trees`` -> ``cnn`` -> ``stack`` -> ``predict``. Each stage has a key: the
hash of its part of the config, the dataset's file listing and the keys of the stages before
it. ``run.json`` records per stage its key, status, wall time, peak memory (this process and
its workers) and device (``seconds`` at the top sums the stages' wall times, however many
invocations they took); a stage whose key matches a finished record is skipped. A stage
that fails or is interrupted (Ctrl-C) is recorded as such and the next ``kelp run`` starts
there again, where each stage's own resume logic picks up finished tiles, folds and epochs.
Earlier stages' outputs stay valid throughout: every file is written atomically.
"""

import json
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say
from kelp._provenance import git_state
from kelp.artifacts import read_marker
from kelp.cluster import connect
from kelp.data.stage import prepare_dataset
from kelp.errors import ConfigError
from kelp.layout import RunLayout, short_hash
from kelp.pipeline.config import STAGES, RunConfig, Stage
from kelp.tabular.config import MODEL_NAMES

__all__ = ["dataset_hash", "run_pipeline", "select_stages"]

_PACKAGES = (
    "numpy", "scipy", "rasterio", "scikit-learn", "polars", "pyarrow", "lightgbm", "xgboost",
    "catboost", "torch", "segmentation-models-pytorch", "timm", "pydantic", "mlflow-skinny",
)  # fmt: skip


def select_stages(only: Stage | None = None, start: Stage | None = None) -> list[Stage]:
    """The stages to consider: one (``only``), from one on (``start``), or all.

    Raises:
        ConfigError: an unknown stage, or both options.
    """
    for given in (only, start):
        if given is not None and given not in STAGES:
            raise ConfigError(f"unknown stage {given!r}; stages are {', '.join(STAGES)}")
    if only is not None and start is not None:
        raise ConfigError("give --only or --from, not both")
    if only is not None:
        return [only]
    return list(STAGES[STAGES.index(start) :]) if start is not None else list(STAGES)


def dataset_hash(root: str | os.PathLike[str]) -> str:
    """Hash of a dataset's file listing: relative paths, sizes and modification times."""
    root = Path(root)
    listing = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        listing.append([str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns])
    return short_hash(listing)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"kelp": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@contextmanager
def _peak_memory() -> Iterator[dict[str, float]]:
    """Sample the RSS of this process plus its children; yields ``{"peak_mb": ...}``."""
    result = {"peak_mb": 0.0}
    stop = threading.Event()
    me = psutil.Process()

    def sample() -> None:
        while True:
            try:
                rss = me.memory_info().rss + sum(
                    c.memory_info().rss for c in me.children(recursive=True)
                )
            except psutil.Error:
                rss = 0
            result["peak_mb"] = max(result["peak_mb"], rss / 2**20)
            if stop.wait(0.2):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


# Each stage is its package's `run(config, layout)` function on its part of the config
# (imported when the stage runs, so that `kelp --help` loads no torch).
def _folds(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
    from kelp.data.stage import split_dataset

    return split_dataset(config.folds, layout)


def _features(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
    from kelp.features.build import build_features

    return build_features(config.features, layout)


def _trees(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
    from kelp.tabular.train import train_trees

    return train_trees(config.tabular, layout)


def _cnn(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
    from kelp.cnn.train import train_cnn

    return train_cnn(config.cnn, layout)


def _stack(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
    from kelp.stacking.stack import stack

    return stack(config.stacking, layout, force=force)


def _predict(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
    from kelp.stacking.predict import predict

    return predict(config.predict, layout)


_RUNNERS: dict[Stage, Callable[[RunConfig, RunLayout, bool], dict[str, Any]]] = {
    "folds": _folds,
    "features": _features,
    "trees": _trees,
    "cnn": _cnn,
    "stack": _stack,
    "predict": _predict,
}


def _device(manifest: dict[str, Any]) -> Any:
    for key in ("devices", "device"):
        if key in manifest:
            return manifest[key]
    return "cpu"


def run_pipeline(
    config: RunConfig,
    config_text: str | None = None,
    only: Stage | None = None,
    start: Stage | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run the pipeline (see the module docstring).

    Args:
        config: the experiment.
        config_text: the config file's text, saved as ``RUN/config.toml``.
        only: run just this stage (its inputs must exist).
        start: run from this stage on.
        force: rerun the selected stages from scratch (their outputs are removed first).

    Returns:
        The content of ``RUN/run.json``.

    Raises:
        Whatever the failing stage raised (after recording it in ``run.json``).
    """
    stages = select_stages(only, start)
    # the cluster is reached (or started) before anything is written
    with connect(config.cluster):
        return _run(config, config_text, stages, force)


def _run(
    config: RunConfig, config_text: str | None, stages: list[Stage], force: bool
) -> dict[str, Any]:
    layout = config.layout()
    run = layout.root
    run.mkdir(parents=True, exist_ok=True)
    data = prepare_dataset(config.data, layout)
    if config_text is not None:
        with atomic_path(layout.config_toml) as tmp:
            tmp.write_text(config_text)
    with atomic_path(layout.config_json) as tmp:
        tmp.write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    previous = _read_run_json(layout)
    record: dict[str, Any] = {
        "name": config.name,
        "run_dir": str(run.resolve()),
        "data": str(data.resolve()),
        "dataset_hash": dataset_hash(data),
        "git": git_state(),
        "versions": _versions(),
        # the run's first start; each invocation's own start is "invoked"
        "started": previous.get("started") or datetime.now(UTC).isoformat(timespec="seconds"),
        "invoked": datetime.now(UTC).isoformat(timespec="seconds"),
        "stages": dict(previous.get("stages", {})),
    }
    upstream = record["dataset_hash"]
    started = time.perf_counter()
    for stage in STAGES:
        key = short_hash([upstream, config.section(stage)])
        upstream = key
        if stage not in stages:
            continue
        old = record["stages"].get(stage, {})
        if not force and old.get("key") == key and old.get("status") == "done":
            say(f"[green]{stage}[/green]: up to date")
            continue
        if force:
            for target in layout.outputs(stage, MODEL_NAMES):
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        say(f"[bold]{stage}[/bold]: running")
        entry: dict[str, Any] = {"key": key, "status": "running"}
        record["stages"][stage] = entry
        _write_run_json(layout, record)
        t0 = time.perf_counter()
        try:
            with _peak_memory() as memory:
                manifest = _RUNNERS[stage](config, layout, force)
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt)
            entry.update(
                status="interrupted" if interrupted else "failed",
                error=None if interrupted else f"{type(error).__name__}: {error}",
                seconds=round(time.perf_counter() - t0, 2),
            )
            _write_run_json(layout, record)
            raise
        entry.update(
            status="done",
            seconds=round(time.perf_counter() - t0, 2),
            peak_rss_mb=round(memory["peak_mb"], 1),
            device=_device(manifest),
        )
        _write_run_json(layout, record)
    record["invocation_seconds"] = round(time.perf_counter() - started, 2)
    record["seconds"] = round(sum(e.get("seconds", 0) for e in record["stages"].values()), 2)
    record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_run_json(layout, record)
    from kelp.pipeline.report import write_report

    record["report"] = str(write_report(run))
    if config.tracking.mlflow:
        from kelp.pipeline.tracking import log_to_mlflow

        record["mlflow_run_id"] = log_to_mlflow(config, run)
        say(f"logged to MLflow run {record['mlflow_run_id']}")
    _write_run_json(layout, record)
    return record


def _read_run_json(layout: RunLayout) -> dict[str, Any]:
    record = read_marker(layout.run_json)
    if record is None and layout.run_json.is_file():
        say(f"[yellow]warning:[/yellow] {layout.run_json} is damaged: every stage is checked again")
    return record or {}


def _write_run_json(layout: RunLayout, record: dict[str, Any]) -> None:
    with atomic_path(layout.run_json) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str))
