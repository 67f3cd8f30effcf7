"""`kelp build-features`: the per-pixel Parquet table of the train tiles, plus its manifest.

Layout of the output folder::

    table/<tile_id>.parquet   one file per train tile (zstd): keys tile_id, row, col, fold,
                              label, kind, weight, then one float32 column per channel
    manifest.json             feature names, config and hashes, per-tile row counts,
                              skipped tiles and why, normalisation statistics

Read it with ``polars.scan_parquet("OUT/table/*.parquet")``.

A run killed half-way resumes where it stopped: each tile file carries the key of what
determines its rows, and tiles already written with the same key are read back, not rebuilt
(:mod:`kelp.features.worker`). Memory stays flat in the number of tiles: workers write their
own files and send back only per-tile summaries, at most ``2 * workers`` tiles are in flight,
and the sample kept for quantiles is a bounded bottom-k sample that does not depend on
processing order. The normalisation statistics, over train tiles only, are described in
:mod:`kelp.features.stats`.
"""

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say, track
from kelp.data.catalog import TileRecord, scan_catalog
from kelp.data.folds import FoldAssignment
from kelp.data.folds_file import check_folds, read_folds
from kelp.errors import DatasetError, InputError
from kelp.features.config import FeatureConfig
from kelp.features.stack import channel_names
from kelp.features.stats import Collector, normalisation
from kelp.features.stats import TileSummary as _TileSummary
from kelp.features.worker import KEY_COLUMNS, existing, file_key, run_jobs
from kelp.features.worker import Job as _Job
from kelp.features.worker import process as _process
from kelp.layout import RunLayout, file_sha256

__all__ = ["KEY_COLUMNS", "build_features"]

OnError = Literal["fail", "skip"]


def build_features(config: FeatureConfig, layout: RunLayout) -> dict[str, Any]:
    """Build the Parquet table of the train tiles and write its ``manifest.json``.

    Args:
        config: channels, sampling (and its seed), workers and what to do with a bad tile.
        layout: reads ``layout.data`` (in ``layout.band_order``) and ``layout.folds`` (every
            train tile must be in it); writes ``layout.features`` (resumed if it holds a
            previous build).

    Returns:
        The manifest (also written to ``layout.features / "manifest.json"``).

    Raises:
        DatasetError: catalogue problems with ``on_error="fail"`` (but those of tiles the
            folds stage skipped, which are listed as skipped).
        InputError: a folds file that does not match the dataset, or a tile that failed with
            ``on_error="fail"``.
        ConfigError: a bad config, e.g. an unknown index or a filter scale larger than a tile.
    """
    data, folds, out = layout.data, layout.folds, layout.features
    names = channel_names(config)
    started = time.perf_counter()
    catalog, problems = scan_catalog(data)
    assignment = read_folds(folds)
    excused = {t for t, _ in assignment.skipped}  # left out by the folds stage
    serious = [p for p in problems if p.tile_id is None or p.tile_id not in excused]
    if serious and config.on_error == "fail":
        raise DatasetError(serious)
    if not serious:
        check_folds(assignment, catalog, folds)
    skipped = [{"tile_id": p.tile_id, "path": str(p.path), "reason": p.message} for p in problems]
    table_dir = out / "table"
    table_dir.mkdir(parents=True, exist_ok=True)
    collected = Collector(assignment.k, len(names))
    jobs = _plan(catalog.train, assignment, config, layout.band_order, table_dir, collected)
    if collected.summaries:
        say(f"resuming: {len(collected.summaries)} tile(s) already written with this config")
    # `_process` is looked up here, at call time, so that tests can replace it.
    results = run_jobs(jobs, config.workers, _process)
    for job, result in track(results, "building features", total=len(jobs)):
        if isinstance(result, Exception):
            skipped.append(_failed(job, result, config.on_error, collected, table_dir))
        else:
            collected.keep(result)
    written = {s.tile_id for s in collected.summaries}
    for stale in table_dir.glob("*.parquet"):
        if stale.stem not in written:
            stale.unlink()
    manifest = _manifest(data, folds, config, names, layout.band_order, collected, skipped, started)
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def _plan(
    train: Sequence[TileRecord],
    assignment: FoldAssignment,
    config: FeatureConfig,
    order: tuple[str, ...],
    table_dir: Path,
    collected: Collector,
) -> list[_Job]:
    """The tiles left to build; those already written with the same key go to ``collected``."""
    seed = config.sampling.seed
    fold_of = dict(zip(assignment.tile_ids, assignment.folds.tolist(), strict=True))
    jobs: list[_Job] = []
    for record in train:
        if record.tile_id not in fold_of:
            continue
        fold = fold_of[record.tile_id]
        key = file_key(config, seed, fold, order)
        path = table_dir / f"{record.tile_id}.parquet"
        done = existing(path, key)
        if done is not None:
            collected.keep(done)
        else:
            jobs.append(_Job(record, fold, config, seed, order, path, key))
    return jobs


def _failed(
    job: _Job, error: Exception, on_error: OnError, collected: Collector, table_dir: Path
) -> dict[str, Any]:
    """The ``skipped`` entry of a tile that failed (its file removed), or raise."""
    reason = str(getattr(error, "problem", error))
    if on_error == "fail":
        raise InputError(
            f"{job.record.image}: {reason} (tile {job.record.tile_id}); "
            f"{len(collected.summaries)} tile(s) already written are kept in {table_dir}; "
            "fix or remove the tile, or rerun with --on-error skip"
        ) from error
    entry = {"tile_id": job.record.tile_id, "path": str(job.record.image), "reason": reason}
    job.path.unlink(missing_ok=True)
    return entry


def _manifest(
    data: str | os.PathLike[str],
    folds: str | os.PathLike[str],
    config: FeatureConfig,
    names: list[str],
    band_order: tuple[str, ...],
    collected: Collector,
    skipped: list[dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    # Sums are merged in tile-id order so the statistics do not depend on completion order.
    summaries: list[_TileSummary] = sorted(collected.summaries, key=lambda s: s.tile_id)
    stats = normalisation(summaries, collected.samples, names)
    seconds = time.perf_counter() - started
    return {
        "stage": "features",
        "kelp_version": __version__,
        "data": str(Path(data).resolve()),
        "folds": str(Path(folds).resolve()),
        "folds_sha256": file_sha256(folds),
        "config": config.model_dump(mode="json"),
        "stack_hash": config.stack_hash(),
        "table_hash": config.table_hash(),
        "seed": config.sampling.seed,
        "band_order": list(band_order),
        "feature_names": names,
        "key_columns": list(KEY_COLUMNS),
        "n_tiles": len(summaries),
        "n_rows": sum(sum(s.rows.values()) for s in summaries),
        "tiles": {
            s.tile_id: {"fold": s.fold, **s.rows, "rows": sum(s.rows.values())} for s in summaries
        },
        "skipped": skipped,
        "normalisation": stats,
        "seconds": round(seconds, 3),
    }
