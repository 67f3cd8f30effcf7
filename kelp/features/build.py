"""`kelp build-features`: the per-pixel Parquet table of the train tiles, plus its manifest.

Layout of the output folder::

    table/<tile_id>.parquet   one file per train tile (zstd): keys tile_id, row, col, fold,
                              label, kind, weight, then one float32 column per channel
    manifest.json             feature names, config and hashes, per-tile row counts,
                              skipped tiles and why, normalisation statistics

Read it with ``polars.scan_parquet("OUT/table/*.parquet")``.

Each tile file is written atomically and carries the hash of everything that determines its
rows (feature config, sampling, seed, fold, band order) in its Parquet metadata, so a run
killed half-way resumes where it stopped: tiles already written with the same key are read
back (their statistics live in the same metadata), the rest are computed. Memory stays flat
in the number of tiles: workers write their own files and send back only per-tile summaries,
at most ``2 * workers`` tiles are in flight, and the sample kept for quantiles is a bounded
bottom-k sample (smallest random keys) that does not depend on processing order.

Normalisation statistics are computed on train tiles only, over a regular grid of every 4th
pixel each way (not just the sampled rows, which over-represent kelp): mean and std merged
exactly across tiles (Chan's pairwise update), the 1% and 99% quantiles from a bounded
uniform sample of those pixels. They are stored for all train tiles and for each "all folds but k"
set, which is what fold k's CNN may see.
"""

import base64
import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say, track
from kelp.data.bands import DEFAULT_BAND_ORDER
from kelp.data.catalog import TileRecord, scan_catalog
from kelp.data.folds import read_folds
from kelp.data.tile import load_tile
from kelp.errors import DatasetError, InputError, TileError
from kelp.features.config import FeatureConfig
from kelp.features.sampling import KINDS, sample_pixels, tile_rng
from kelp.features.stack import build_channels, channel_names
from kelp.layout import file_sha256, short_hash

__all__ = ["KEY_COLUMNS", "build_features"]

KEY_COLUMNS = ("tile_id", "row", "col", "fold", "label", "kind", "weight")
OnError = Literal["fail", "skip"]

_META_KEY = b"kelp.tile"
_QUANTILE_SAMPLE = 50_000  # pixels kept for quantiles, per fold
_PER_TILE_SAMPLE = 256  # pixels each tile offers to that sample
_STATS_STRIDE = 4  # statistics use every 4th pixel in each direction
_FORMAT = 2  # bump when the per-tile file or its summary changes: old files are rebuilt


@dataclass
class _TileSummary:
    tile_id: str
    fold: int
    rows: dict[str, int]
    count: np.ndarray  # (C,) valid pixels
    total: np.ndarray  # (C,) sum
    m2: np.ndarray  # (C,) sum of squared deviations from the tile's own mean
    keys: np.ndarray  # (S,) random keys of the sampled pixels
    values: np.ndarray  # (S, C) their values

    def to_json(self) -> str:
        def enc(a: np.ndarray) -> str:
            return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()

        return json.dumps(
            {
                "tile_id": self.tile_id,
                "fold": self.fold,
                "rows": self.rows,
                "count": enc(self.count.astype(np.float64)),
                "total": enc(self.total.astype(np.float64)),
                "m2": enc(self.m2.astype(np.float64)),
                "keys": enc(self.keys.astype(np.float64)),
                "values": enc(self.values.astype(np.float32)),
                "shape": list(self.values.shape),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "_TileSummary":
        d = json.loads(text)

        def dec(key: str, dtype: type) -> np.ndarray:
            return np.frombuffer(base64.b64decode(d[key]), dtype=dtype)

        return cls(
            d["tile_id"],
            d["fold"],
            d["rows"],
            dec("count", np.float64),
            dec("total", np.float64),
            dec("m2", np.float64),
            dec("keys", np.float64),
            dec("values", np.float32).reshape(d["shape"]),
        )


@dataclass
class _Job:
    record: TileRecord
    fold: int
    config: FeatureConfig
    seed: int
    band_order: tuple[str, ...]
    path: Path
    key: str


@dataclass
class _Stats:
    """Mergeable per-channel statistics of a set of tiles."""

    count: np.ndarray
    total: np.ndarray
    m2: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    tiles: int = 0

    @classmethod
    def empty(cls, channels: int) -> "_Stats":
        z = np.zeros(channels, np.float64)
        return cls(z.copy(), z.copy(), z.copy(), np.empty(0), np.empty((0, channels), np.float32))

    def add(self, s: "_Stats | _TileSummary") -> None:
        # Chan et al.'s pairwise update: exact and stable, unlike sums of squares.
        n_a, n_b = self.count, s.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.where(n_b > 0, s.total / n_b, 0) - np.where(n_a > 0, self.total / n_a, 0)
            self.m2 = self.m2 + s.m2 + np.where(n > 0, delta**2 * n_a * n_b / n, 0)
        self.count = n
        self.total = self.total + s.total
        self.tiles += s.tiles if isinstance(s, _Stats) else 1
        self.add_sample(s.keys, s.values)

    def add_sample(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Merge pixels into the quantile sample, keeping the smallest random keys."""
        self.keys = np.concatenate([self.keys, keys])
        self.values = np.concatenate([self.values, values])
        if len(self.keys) > _QUANTILE_SAMPLE:
            keep = np.argsort(self.keys, kind="stable")[:_QUANTILE_SAMPLE]
            self.keys, self.values = self.keys[keep], self.values[keep]

    def summary(self, names: Sequence[str]) -> dict[str, Any]:
        n = np.maximum(self.count, 1)
        mean = self.total / n
        std = np.sqrt(self.m2 / n)
        q01 = q99 = np.full(len(names), np.nan)
        if len(self.values):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channel: NaN quantile
                q01, q99 = np.nanquantile(self.values, [0.01, 0.99], axis=0)

        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else round(float(x), 6)

        return {
            "tiles": self.tiles,
            "channels": {
                name: {
                    "mean": num(mean[i]) if self.count[i] else None,
                    "std": num(std[i]) if self.count[i] else None,
                    "q01": num(q01[i]),
                    "q99": num(q99[i]),
                    "valid_pixels": int(self.count[i]),
                }
                for i, name in enumerate(names)
            },
        }


def _file_key(config: FeatureConfig, seed: int, fold: int, band_order: Sequence[str]) -> str:
    return short_hash([_FORMAT, config.table_hash(), seed, fold, list(band_order), __version__])


def _process(job: _Job) -> _TileSummary:
    """Build, sample and write one tile (runs in a worker process)."""
    tile = load_tile(job.record, job.band_order)
    stack, names = build_channels(tile, job.config)
    if tile.mask is None:
        raise TileError(job.record.image, "train tile without a kelp mask")
    sample = sample_pixels(tile.mask, tile.tile_id, job.config.sampling, job.seed)
    n = len(sample)
    columns: dict[str, pa.Array] = {
        "tile_id": pa.array([tile.tile_id] * n, pa.string()),
        "row": pa.array(sample.rows, pa.int32()),
        "col": pa.array(sample.cols, pa.int32()),
        "fold": pa.array(np.full(n, job.fold, np.int8), pa.int8()),
        "label": pa.array(tile.mask[sample.rows, sample.cols].astype(np.uint8), pa.uint8()),
        "kind": pa.DictionaryArray.from_arrays(
            pa.array(sample.kind, pa.int8()), pa.array(KINDS, pa.string())
        ),
        "weight": pa.array(sample.weight, pa.float32()),
    }
    picked = stack[:, sample.rows, sample.cols]
    for i, name in enumerate(names):
        columns[name] = pa.array(picked[i], pa.float32(), from_pandas=False)
    summary = _summarise(tile.tile_id, job.fold, stack, sample.kind, job.seed)
    table = pa.table(columns).replace_schema_metadata(
        {_META_KEY: json.dumps({"key": job.key, "summary": summary.to_json()}).encode()}
    )
    with atomic_path(job.path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return summary


def _summarise(
    tile_id: str, fold: int, stack: np.ndarray, kind: np.ndarray, seed: int
) -> _TileSummary:
    c = stack.shape[0]
    # Every 4th pixel each way: 1/16 of the work for statistics that thousands of tiles
    # estimate to far better than the quantile sample's own precision.
    flat = stack[:, ::_STATS_STRIDE, ::_STATS_STRIDE].reshape(c, -1).astype(np.float64)
    valid = ~np.isnan(flat)
    count = valid.sum(axis=1)
    values = np.where(valid, flat, 0.0)
    total = values.sum(axis=1)
    mean = total / np.maximum(count, 1)
    deviation = np.where(valid, values - mean[:, None], 0.0)
    rng = tile_rng(seed + 1, tile_id)
    pick = rng.choice(flat.shape[1], min(_PER_TILE_SAMPLE, flat.shape[1]), replace=False)
    return _TileSummary(
        tile_id=tile_id,
        fold=fold,
        rows={k: int(np.count_nonzero(kind == i)) for i, k in enumerate(KINDS)},
        count=count.astype(np.float64),
        total=total,
        m2=np.einsum("ij,ij->i", deviation, deviation),
        keys=rng.random(len(pick)),
        values=flat[:, pick].T.astype(np.float32),
    )


def _existing(path: Path, key: str) -> _TileSummary | None:
    if not path.is_file():
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
        payload = json.loads(meta.get(_META_KEY, b"{}"))
    except (OSError, ValueError, pa.ArrowException):
        return None
    if payload.get("key") != key:
        return None
    try:
        return _TileSummary.from_json(payload["summary"])
    except (KeyError, ValueError, TypeError):  # written by another format: rebuild it
        return None


def _run_jobs(jobs: list[_Job], workers: int) -> Iterator[tuple[_Job, _TileSummary | Exception]]:
    if workers <= 1:
        for job in jobs:
            try:
                yield job, _process(job)
            except (TileError, ValueError, OSError) as error:
                yield job, error
        return
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: dict[cf.Future[_TileSummary], _Job] = {}
        queue = iter(jobs)
        try:
            for job in queue:
                pending[pool.submit(_process, job)] = job
                if len(pending) >= 2 * workers:
                    break
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    failure = future.exception()
                    if isinstance(failure, Exception):
                        yield job, failure
                    elif failure is not None:  # KeyboardInterrupt, SystemExit: stop the run
                        raise failure
                    else:
                        yield job, future.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending[pool.submit(_process, nxt)] = nxt
        finally:
            for future in pending:
                future.cancel()


def build_features(
    data: str | os.PathLike[str],
    folds: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: FeatureConfig | None = None,
    seed: int = 0,
    workers: int = 1,
    on_error: OnError = "fail",
    band_order: Sequence[str] = DEFAULT_BAND_ORDER,
) -> dict[str, Any]:
    """Build the Parquet table of the train tiles and write ``manifest.json``.

    Args:
        data: dataset folder.
        folds: ``folds.csv`` (see ``kelp data folds``); every train tile must be in it.
        out: output folder (created; resumed if it holds a previous run).
        config: channels and sampling; the default stack when ``None``.
        seed: seeds the pixel sampling (with each tile id).
        workers: processes; 1 computes in this process.
        on_error: ``"fail"`` stops at the first bad tile (keeping the tiles written so far);
            ``"skip"`` leaves it out and lists it in the manifest.
        band_order: names of the file's bands, first band first.

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        DatasetError: catalogue problems with ``on_error="fail"``.
        InputError: a folds file that does not match the dataset.
        InputError: a tile failed with ``on_error="fail"``.
        ValueError: a bad config, e.g. an unknown index or a filter scale larger than a tile.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    config = config or FeatureConfig()
    names = channel_names(config)
    started = time.perf_counter()
    catalog, problems = scan_catalog(data)
    if problems and on_error == "fail":
        raise DatasetError(problems)
    skipped = [{"tile_id": p.tile_id, "path": str(p.path), "reason": p.message} for p in problems]
    assignment = read_folds(folds, catalog if not problems else None)
    fold_of = dict(zip(assignment.tile_ids, assignment.folds.tolist(), strict=True))
    out = Path(out)
    table_dir = out / "table"
    table_dir.mkdir(parents=True, exist_ok=True)
    order = tuple(band_order)

    # Per tile only sums and row counts stay in memory; the pixel samples go straight into
    # each fold's bounded bottom-k sample, so memory does not grow with the number of tiles.
    summaries: list[_TileSummary] = []
    samples = {f: _Stats.empty(len(names)) for f in range(assignment.k)}

    def keep(summary: _TileSummary) -> None:
        samples[summary.fold].add_sample(summary.keys, summary.values)
        summaries.append(
            dataclasses.replace(summary, keys=np.empty(0), values=np.empty((0, len(names))))
        )

    jobs: list[_Job] = []
    for record in catalog.train:
        if record.tile_id not in fold_of:
            continue
        fold = fold_of[record.tile_id]
        key = _file_key(config, seed, fold, order)
        path = table_dir / f"{record.tile_id}.parquet"
        done = _existing(path, key)
        if done is not None:
            keep(done)
        else:
            jobs.append(_Job(record, fold, config, seed, order, path, key))
    if summaries:
        say(f"resuming: {len(summaries)} tile(s) already written with this config")
    for job, result in track(_run_jobs(jobs, workers), "building features", total=len(jobs)):
        if isinstance(result, Exception):
            reason = str(getattr(result, "problem", result))
            if on_error == "fail":
                raise InputError(
                    f"{job.record.image}: {reason} (tile {job.record.tile_id}); "
                    f"{len(summaries)} tile(s) already written are kept in {table_dir}; "
                    "fix or remove the tile, or rerun with --on-error skip"
                ) from result
            skipped.append(
                {"tile_id": job.record.tile_id, "path": str(job.record.image), "reason": reason}
            )
            job.path.unlink(missing_ok=True)
            continue
        keep(result)
    written = {s.tile_id for s in summaries}
    for stale in table_dir.glob("*.parquet"):
        if stale.stem not in written:
            stale.unlink()
    manifest = _manifest(
        data, folds, config, names, seed, order, summaries, samples, skipped, started
    )
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def _manifest(
    data: str | os.PathLike[str],
    folds: str | os.PathLike[str],
    config: FeatureConfig,
    names: list[str],
    seed: int,
    band_order: tuple[str, ...],
    summaries: list[_TileSummary],
    per_fold: dict[int, _Stats],
    skipped: list[dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    # Sums are merged in tile-id order so the statistics do not depend on completion order.
    summaries = sorted(summaries, key=lambda s: s.tile_id)
    k = len(per_fold)
    for s in summaries:
        per_fold[s.fold].add(s)
    everything = _Stats.empty(len(names))
    for stats in per_fold.values():
        everything.add(stats)
    without = {}
    for f in range(k):
        rest = _Stats.empty(len(names))
        for g, stats in per_fold.items():
            if g != f:
                rest.add(stats)
        without[str(f)] = rest.summary(names)
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
        "seed": seed,
        "band_order": list(band_order),
        "feature_names": names,
        "key_columns": list(KEY_COLUMNS),
        "n_tiles": len(summaries),
        "n_rows": sum(sum(s.rows.values()) for s in summaries),
        "tiles": {
            s.tile_id: {"fold": s.fold, **s.rows, "rows": sum(s.rows.values())} for s in summaries
        },
        "skipped": skipped,
        "normalisation": {"train": everything.summary(names), "without_fold": without},
        "seconds": round(seconds, 3),
    }
