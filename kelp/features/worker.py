"""One Parquet file per train tile: building it in a worker process, and finding it done.

Each tile file is written atomically and carries the hash of everything that determines its
rows (feature config, sampling, seed, fold, band order) in its Parquet metadata, so a run
killed half-way resumes where it stopped: tiles already written with the same key are read
back (their statistics live in the same metadata), the rest are computed. Workers write
their own files and send back only per-tile summaries, and at most ``2 * workers`` tiles are
in flight.
"""

import concurrent.futures as cf
import json
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kelp import __version__
from kelp._files import atomic_path
from kelp.cluster import bounded, current, run_tasks, total_threads
from kelp.data.catalog import TileRecord
from kelp.data.tile import load_tile
from kelp.errors import TileError
from kelp.features.config import FeatureConfig
from kelp.features.sampling import KINDS, sample_pixels
from kelp.features.stack import build_channels
from kelp.features.stats import TileSummary, stats_pixels, summarise
from kelp.layout import short_hash

__all__ = ["KEY_COLUMNS", "Job", "existing", "file_key", "process", "run_jobs"]

KEY_COLUMNS = ("tile_id", "row", "col", "fold", "label", "kind", "weight")

_META_KEY = b"kelp.tile"
_FORMAT = 2  # bump when the per-tile file or its summary changes: old files are rebuilt
# Dictionary encoding only for the repeated strings, statistics only for the keys: float
# columns of distinct values gain nothing from either, and the write took twice as long.
_PARQUET: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["tile_id", "kind"],
    "write_statistics": list(KEY_COLUMNS),
}


@dataclass
class Job:
    record: TileRecord
    fold: int
    config: FeatureConfig
    seed: int
    band_order: tuple[str, ...]
    path: Path
    key: str


def file_key(config: FeatureConfig, seed: int, fold: int, band_order: Sequence[str]) -> str:
    """The key a tile file must carry to be reused."""
    return short_hash([_FORMAT, config.table_hash(), seed, fold, list(band_order), __version__])


def process(job: Job) -> TileSummary:
    """Build, sample and write one tile (runs in a worker process)."""
    tile = load_tile(job.record, job.band_order)
    if tile.mask is None:
        raise TileError(job.record.image, "train tile without a kelp mask")
    sample = sample_pixels(tile.mask, tile.tile_id, job.config.sampling, job.seed)
    n = len(sample)
    # Channels only where they are needed: the sampled rows and the statistics' pixels.
    flat = sample.rows.astype(np.int64) * tile.shape[1] + sample.cols
    values, names = build_channels(
        tile, job.config, np.concatenate([flat, stats_pixels(tile.shape)])
    )
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
    for i, name in enumerate(names):
        columns[name] = pa.array(values[i, :n], pa.float32(), from_pandas=False)
    summary = summarise(tile.tile_id, job.fold, values[:, n:], sample.kind, job.seed)
    table = pa.table(columns).replace_schema_metadata(
        {_META_KEY: json.dumps({"key": job.key, "summary": summary.to_json()}).encode()}
    )
    with atomic_path(job.path) as tmp:
        pq.write_table(table, tmp, **_PARQUET)
    return summary


def existing(path: Path, key: str) -> TileSummary | None:
    """The summary of a tile file already written with ``key``; ``None``: build it."""
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
        return TileSummary.from_json(payload["summary"])
    except (KeyError, ValueError, TypeError):  # written by another format: rebuild it
        return None


def run_jobs(
    jobs: list[Job], workers: int, work: Callable[[Job], TileSummary] = process
) -> Iterator[tuple[Job, TileSummary | Exception]]:
    """Run ``work`` on each job, in ``workers`` processes; yields results as they finish.

    A tile's failure is yielded as its result: in one process a ``TileError``, ``ValueError``
    or ``OSError`` (anything else propagates), in a pool any ``Exception``;
    ``KeyboardInterrupt`` and ``SystemExit`` stop the run. With several workers ``work``
    must be picklable. On a cluster (:func:`kelp.cluster.connect`) each job is a task and
    ``workers`` is ignored: the cluster's threads say how many run at once.
    """
    client = current()
    if client is not None:  # tiles as tasks on the cluster, 2 in flight per thread
        done = run_tasks(work, jobs, in_flight=2 * total_threads(client))
        yield from _outcomes(done)
        return
    if workers <= 1:
        for job in jobs:
            try:
                yield job, work(job)
            except (TileError, ValueError, OSError) as error:
                yield job, error
        return
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from _outcomes(bounded(lambda job: pool.submit(work, job), jobs, 2 * workers))


def _outcomes(
    done: Iterator[tuple[Job, "cf.Future[TileSummary]"]],
) -> Iterator[tuple[Job, TileSummary | Exception]]:
    """Each job with its summary or its ``Exception``; ``KeyboardInterrupt`` and
    ``SystemExit`` stop the run."""
    for job, future in done:
        failure = future.exception()
        if isinstance(failure, Exception):
            yield job, failure
        elif failure is not None:
            raise failure
        else:
            yield job, future.result()
