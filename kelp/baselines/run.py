"""Score the baselines on a run's folds, as kelp's own models are scored.

For every baseline and fold k: fit on the other folds' tiles (early-stopping on an inner,
area-grouped part of them, :func:`kelp.data.split.plan_fold`, so fold k is never read
before its maps are made), predict every tile of fold k and count its pixels against the
mask at every threshold (:class:`~kelp.thresholds.ThresholdCounts`). The headline is the
nested out-of-fold Dice (:func:`kelp.oof_report.nested_entry`: each fold at the threshold
best on the other folds); the in-sample best pooled Dice is given beside it, as such.

Test tiles with a truth mask (``DATA/test_kelp/<id>_kelp.tif``, as the synthetic datasets
have) are predicted by the fold ensemble, the mean of the k fold models' probabilities, and
scored at the threshold best on the pooled out-of-fold counts: chosen on train tiles only.

Layout of ``OUT``::

    OUT/baselines.json                     the summary (returned by run_baselines)
    OUT/<baseline>/fold=<k>/fold.json      counts, rounds, seconds, the resume key
    OUT/<baseline>/fold=<k>/test.npz       float16 P(kelp) of each test tile

Resumable: a (baseline, fold) whose ``fold.json`` carries the same key (baseline and its
parameters, folds file, fold, test tiles, kelp version) is not redone. Every file is written
atomically, ``fold.json`` last.
"""

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say
from kelp.baselines.models import BASELINES, Baseline, create_baseline
from kelp.baselines.scoring import summarise
from kelp.baselines.tiles import TileSet
from kelp.baselines.trees import DEFAULT_MAX_ROWS
from kelp.data.catalog import Catalog, TileRecord
from kelp.data.folds import FoldAssignment
from kelp.data.folds_file import read_run_folds
from kelp.data.io import read_mask
from kelp.data.split import plan_fold
from kelp.errors import InputError
from kelp.layout import file_sha256, short_hash
from kelp.thresholds import ThresholdCounts

__all__ = ["run_baselines"]

_METRIC = (
    "global Dice of the kelp class (P(kelp) >= threshold) over every pixel of the "
    "out-of-fold tiles; oof_nested = each fold at the threshold best on the other folds, "
    "pooled; oof_in_sample = the best threshold of the pooled counts, chosen on them; "
    "test = the fold ensemble's test tiles at that pooled out-of-fold threshold"
)


def run_baselines(
    data_root: str | os.PathLike[str],
    folds_csv: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    names: Sequence[str] = ("ndvi", "first_place", "second_place"),
    *,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    n_jobs: int = 2,
) -> dict[str, Any]:
    """Cross-validate the baselines on a folds file; write ``OUT/baselines.json``.

    Args:
        data_root: the dataset folder.
        folds_csv: the run's ``folds.csv`` (skipped tiles are left out).
        out_dir: where results go; a rerun resumes from what it holds.
        names: baselines to score, see :data:`~kelp.baselines.models.BASELINES`.
        seed: seeds the trees, their pixel samples and the inner early-stopping split.
        max_rows: training rows of ``first_place``.
        n_jobs: threads of the trees. On a machine shared with other jobs, set
            ``OMP_WAIT_POLICY=PASSIVE`` before scikit-learn is imported (the command line
            does, see :mod:`kelp.baselines.__main__`), or use ``n_jobs=1``.

    Returns:
        What ``baselines.json`` holds: ``{"metric", "data", "folds", "seed", "max_rows",
        "baselines": {name: {"oof_nested", "oof_in_sample", "threshold", "test",
        "test_tiles", "per_fold", "seconds", "rounds", "params"}}}``.

    Raises:
        ConfigError: an unknown baseline name.
        InputError: a folds file that does not match the dataset, or training folds
            without kelp.
        DatasetError: the dataset's problems, other than those of skipped tiles.
    """
    for name in names:
        BASELINES.get(name)
    data_root, folds_csv, out_dir = Path(data_root), Path(folds_csv), Path(out_dir)
    assignment, catalog = read_run_folds(folds_csv, data_root)
    records = {r.tile_id: r for r in catalog.train}
    test = _test_tiles(data_root, catalog)
    common = {
        "folds_sha256": file_sha256(folds_csv),
        "test_tiles": sorted(test),
        "kelp_version": __version__,
    }
    has_kelp = _HasKelp(assignment, records)
    summary = {}
    for name in dict.fromkeys(names):
        folds: dict[int, dict[str, Any]] = {}
        for fold in range(assignment.k):
            model = create_baseline(name, seed=seed, max_rows=max_rows, n_jobs=n_jobs)
            key = short_hash({**common, "baseline": name, "params": model.params(), "fold": fold})
            folder = out_dir / name / f"fold={fold}"
            record = _finished(folder, key, bool(test))
            if record is None:
                record = _run_fold(
                    model, key, folder, fold, assignment, records, test, has_kelp, seed
                )
            else:
                say(f"{name} fold {fold}: done before, kept ({folder})")
            folds[fold] = record
        summary[name] = summarise(model, folds, out_dir / name, test)
    result = {
        "metric": _METRIC,
        "data": str(data_root.resolve()),
        "folds": str(folds_csv.resolve()),
        "seed": seed,
        "max_rows": max_rows,
        "baselines": summary,
    }
    with atomic_path(out_dir / "baselines.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return result


def _test_tiles(data_root: Path, catalog: Catalog) -> dict[str, tuple[TileRecord, Path]]:
    """Test tiles with a truth mask in ``DATA/test_kelp``; none when it is missing."""
    folder = data_root / "test_kelp"
    if not folder.is_dir():
        return {}
    masks = {r.tile_id: folder / f"{r.tile_id}_kelp.tif" for r in catalog.test}
    return {r.tile_id: (r, masks[r.tile_id]) for r in catalog.test if masks[r.tile_id].is_file()}


class _HasKelp:
    """Whether a train tile has kelp: from the folds file's flags, else from its mask (read
    once, and only when a fold trains on the tile)."""

    def __init__(self, assignment: FoldAssignment, records: dict[str, TileRecord]) -> None:
        self.records = records
        self.known: dict[str, bool] = {}
        if assignment.flags:
            flags = zip(assignment.tile_ids, assignment.flags, strict=True)
            self.known = {t: bool(f["has_kelp"]) for t, f in flags}

    def of(self, tile_ids: Sequence[str]) -> dict[str, bool]:
        for t in tile_ids:
            if t not in self.known:
                mask_path = self.records[t].mask
                self.known[t] = mask_path is not None and bool(read_mask(mask_path).any())
        return {t: self.known[t] for t in tile_ids}


def _finished(folder: Path, key: str, with_test: bool) -> dict[str, Any] | None:
    """The record of a (baseline, fold) made under ``key``, or ``None`` to redo it."""
    path = folder / "fold.json"
    if not path.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("key") != key or (with_test and not (folder / "test.npz").is_file()):
        return None
    return record


def _run_fold(
    model: Baseline,
    key: str,
    folder: Path,
    fold: int,
    assignment: FoldAssignment,
    records: dict[str, TileRecord],
    test: dict[str, tuple[TileRecord, Path]],
    has_kelp: _HasKelp,
    seed: int,
) -> dict[str, Any]:
    """Fit fold ``fold``'s model, count its out-of-fold maps, store its test maps."""
    started = time.perf_counter()
    plan_record: dict[str, Any] = {}
    if model.needs_fit:
        folds = zip(assignment.tile_ids, assignment.folds, strict=True)
        train = [t for t, f in folds if f != fold]
        plan = plan_fold(assignment, fold, has_kelp.of(train), seed=seed)
        fit_tiles = TileSet([records[t] for t in plan.fit_tiles])
        stop_tiles = TileSet([records[t] for t in plan.stop_tiles])
        model.fit(fit_tiles, stop_tiles)
        plan_record = {
            "stop_areas": list(plan.stop_areas),
            "early_stopping": "on" if plan.stop_tiles else plan.note,
            "fit": getattr(model, "fit_info_", None),
        }
    fitted = time.perf_counter()
    counts = ThresholdCounts()
    for tile in TileSet([records[t] for t in sorted(assignment.tiles_in(fold))]):
        if tile.mask is None:
            raise InputError(f"train tile {tile.tile_id} has no kelp mask")
        counts.update(model.predict_proba(tile), tile.mask)
    if test:
        maps: dict[str, Any] = {
            tile.tile_id: model.predict_proba(tile).astype(np.float16)
            for tile in TileSet([rec for rec, _ in test.values()])
        }
        with atomic_path(folder / "test.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **maps)
    finished = time.perf_counter()
    threshold, best = counts.best()
    record = {
        "key": key,
        "baseline": model.name,
        "fold": fold,
        "params": model.params(),
        "counts": counts.to_dict(),
        "rounds": model.best_iteration_,
        "fit_seconds": round(fitted - started, 3),
        "seconds": round(finished - started, 3),
        **plan_record,
    }
    with atomic_path(folder / "fold.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    rounds = f", {model.best_iteration_} rounds" if model.best_iteration_ is not None else ""
    say(
        f"{model.name} fold {fold}: in-fold best Dice {best.dice:.4f} at {threshold:.2f}"
        f"{rounds} ({finished - started:.1f} s)"
    )
    return record
