"""`kelp predict`: masks for new tiles, in batches of one size, with the stacked models.

For each tile: its channel stack (computed once, in the band order of the feature build),
each base model's fold ensemble (the mean of its fold models' logits, the CNN with TTA and
autocast as its out-of-fold logits were made), the meta-model of ``kelp stack``, the
post-processing decision chosen on out-of-fold data, and ``<tile_id>_kelp.tif`` (uint8 0/1,
the input's shape and transform) in ``RUN/predictions/``; then ``submission.tar``. Nothing
is predicted when the folds file, the feature build or a base model changed after
``kelp stack``.

How it runs (:class:`~kelp.stacking.config.PredictConfig`): the next tiles are read and
stacked in this process or in loader workers (:mod:`kelp.stacking.tiles`); the tree
families take each tile as it comes and the CNN takes tiles of one size ``batch_size`` at a
time (:mod:`kelp.stacking.stream`); two families work at once, each library on half the
cores (:mod:`kelp.stacking.lanes`). None of this changes a mask: each tile's numbers are
those of the tile alone. A CNN batch that fails is redone one tile at a time, so only the
tile that fails gets an all-zero mask.

On a cluster (``--cluster``, :mod:`kelp.cluster`) the tiles go out as tasks of a few tiles
each; a worker keeps the models it loaded for the next task and writes its masks itself, one
thread per task (as trees and torch on one thread each here would), and only each tile's
fate comes back.

Resumable: the folder carries the key of what makes its masks (meta-model, the stacker's
and every base model's keys, decision); a rerun with the same key skips tiles already
written, another key starts over.
"""

import functools
import json
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import hushed, say, track
from kelp.artifacts import read_json, read_marker
from kelp.cluster import current, gpu_resources, run_tasks, total_threads
from kelp.data.catalog import Catalog, Problem, TileRecord, scan_catalog
from kelp.data.folds_file import read_folds
from kelp.data.io import pack_submission, write_mask
from kelp.data.tile import Tile
from kelp.devices import Device
from kelp.errors import DatasetError, InputError, StaleInputError
from kelp.features.manifest import FeatureBuild, read_build
from kelp.features.stack import build_channels
from kelp.layout import RunLayout, file_sha256, short_hash
from kelp.maps import store_manifest
from kelp.stacking.config import PredictConfig
from kelp.stacking.lanes import Lanes
from kelp.stacking.postprocess import Decision
from kelp.stacking.stack import fused_probability, load_meta
from kelp.stacking.stream import Logits, stream_logits
from kelp.stacking.tiles import PreparedTile, TileInputs, prepare_tile, prepared_tiles
from kelp.tabular.models.base import available_cores

__all__ = ["BaseEnsemble", "predict"]

_PARTIAL = ".partial.json"
_EMPTY = "empty_masks.json"  # readable test tiles that got an all-zero mask, and why
_NOTES = ".empty"  # the same, one file per tile, until the manifest is written


class BaseEnsemble:
    """The base models the stacker was fit on, predicting a tile (:meth:`logits`) or a batch
    of tiles of one size, family by family (:meth:`family_logits`).

    Each family is its fold ensemble (:func:`kelp.tabular.predict.fold_logits`,
    :class:`kelp.cnn.ensemble.CnnEnsemble`): the code that wrote the out-of-fold maps, so a
    train tile through the fold model that held it out gives its out-of-fold map again,
    alone or in a batch (the CNN's out-of-fold logits were made in batches too).
    Before anything is loaded, the run is checked against what ``kelp stack`` recorded: the
    same folds file, the same feature build and, per base model, maps made under the same
    key; each fold model must then carry that key (see the family loaders).

    Args:
        run: the run folder.
        stacking: ``RUN/stacking/manifest.json`` of the stacker.
        tta: CNN test-time augmentation; ``None`` = as its out-of-fold logits were made.
        device: where the CNN runs.
        folds: fold models to use; ``None`` = every fold (``kelp predict``). One fold
            reproduces that fold's out-of-fold maps.

    Raises:
        StaleInputError: anything changed since ``kelp stack``; says which command to run.
    """

    def __init__(
        self,
        run: Path,
        stacking: dict[str, Any],
        tta: bool | None = None,
        device: Device = "auto",
        folds: Sequence[int] | None = None,
    ) -> None:
        from kelp.tabular.data import check_feature_names
        from kelp.tabular.predict import load_fold_models

        build = _check_unchanged(RunLayout.of(run), stacking)
        self.config = build.config
        self.band_order = build.band_order
        self.feature_names = list(build.feature_names)
        self.names = tuple(stacking["models"])
        self.trees = {}
        for name in self.names:
            if name == "cnn":
                continue
            models = load_fold_models(run, name, folds)
            for model in models.values():
                check_feature_names(model.feature_names_in_, self.feature_names, f"{name} model")
            self.trees[name] = list(models.values())
        self.cnn = None
        if "cnn" in self.names:
            from kelp.cnn.device import resolve_device
            from kelp.cnn.ensemble import load_ensemble

            self.cnn = load_ensemble(run, resolve_device(device), folds, tta)
            self.cnn_index = [self.feature_names.index(c) for c in self.cnn.channels]

    def logits(self, tile: Tile) -> np.ndarray:
        """``(M, H, W) float32`` logits of every base model, in :attr:`names` order."""
        from kelp.tabular.predict import fold_logits, pixel_rows

        stack, _ = build_channels(tile, self.config)
        rows = None
        out = []
        for name in self.names:
            if name == "cnn" and self.cnn is not None:
                out.append(self.cnn.tile_logits(stack[self.cnn_index], tile.tile_id))
                continue
            rows = pixel_rows(stack) if rows is None else rows
            out.append(fold_logits(self.trees[name], rows).reshape(tile.shape))
        return np.stack(out)

    @property
    def inputs(self) -> TileInputs:
        """What each tile must bring: the trees' pixel rows, the CNN's channels."""
        cnn_index = tuple(self.cnn_index) if self.cnn is not None else None
        return TileInputs(tuple(self.band_order), self.config, bool(self.trees), cnn_index)

    def family_logits(self, name: str, batch: Sequence[PreparedTile]) -> np.ndarray:
        """``(B, H, W) float32`` logits of one family's fold ensemble, for tiles of one shape
        prepared with :attr:`inputs` (the CNN takes them in one forward pass)."""
        from kelp.tabular.predict import fold_logits

        if name == "cnn" and self.cnn is not None:
            raws = [_given(t.raw, t, "CNN channels") for t in batch]
            return self.cnn.batch_logits(raws, [t.record.tile_id for t in batch])
        models = self.trees[name]
        return np.stack(
            [fold_logits(models, _given(t.rows, t, "pixel rows")).reshape(t.shape) for t in batch]
        )

    @contextmanager
    def threads(self, n: int | None) -> Iterator[None]:
        """Every library (tree models and torch) on ``n`` threads inside; ``None`` = as is."""
        if n is None:
            yield
            return
        before = {id(m): m.n_jobs for models in self.trees.values() for m in models}
        for models in self.trees.values():
            for model in models:
                model.n_jobs = n
        torch_threads = None
        if self.cnn is not None:
            import torch

            torch_threads = torch.get_num_threads()
            torch.set_num_threads(n)
        try:
            yield
        finally:
            for models in self.trees.values():
                for model in models:
                    model.n_jobs = before[id(model)]
            if torch_threads is not None:
                import torch

                torch.set_num_threads(torch_threads)

    def describe(self) -> dict[str, Any]:
        """What the ensemble is made of, for the manifest and the key."""
        cnn = None
        if self.cnn is not None:
            cnn = {
                "folds": list(self.cnn.folds),
                "tta": self.cnn.tta,
                "precision": self.cnn.precision.name,
                "key": self.cnn.key,
                "checkpoints": [str(c.path) for c in self.cnn.checkpoints],
            }
        return {"trees": {n: len(ms) for n, ms in self.trees.items()}, "cnn": cnn}


def _check_unchanged(layout: RunLayout, stacking: dict[str, Any]) -> FeatureBuild:
    """The run's feature build, after checking nothing the stacker used has changed since."""
    rerun = "rerun `kelp stack` (or `kelp run`, which redoes what is stale)"
    if "base_keys" not in stacking:
        raise StaleInputError(f"{layout.stacking} was made by an older kelp: {rerun}")
    folds = layout.folds
    if not folds.is_file() or file_sha256(folds) != stacking["folds_sha256"]:
        raise StaleInputError(
            f"{folds} changed after `kelp stack`: retrain the base models on it "
            "(`kelp train-trees`, `kelp train-cnn`), then `kelp stack`; `kelp run` does all"
        )
    build = read_build(layout.features)
    if build.stack_hash != stacking["stack_hash"]:
        raise StaleInputError(
            f"the features in {build.root} changed after `kelp stack` (stack "
            f"{stacking['stack_hash']}, now {build.stack_hash}): retrain the base models and "
            f"{rerun}"
        )
    for name, key in stacking["base_keys"].items():
        current = store_manifest(layout.oof(name))
        if current is None or current.get("key") != key:
            raise StaleInputError(
                f"the {name} model changed after `kelp stack` (its out-of-fold maps in "
                f"{layout.oof(name)} are not the ones the stacker was fit on): {rerun}"
            )
    return build


def _key(
    layout: RunLayout, stacking: dict[str, Any], decision: dict[str, Any], tta: bool | None
) -> str:
    """What the masks depend on: meta-model, stacker key, base-model keys, decision, TTA."""
    payload = [
        file_sha256(layout.stacking / "meta.joblib"),
        stacking["key"],
        stacking["base_keys"],
        decision,
        tta,
        __version__,
    ]
    return short_hash(payload)


def predict(config: PredictConfig, layout: RunLayout) -> dict[str, Any]:
    """Write a mask per test tile (tiles without a kelp mask) and ``submission.tar``.

    Args:
        config: which tiles, where the masks go, TTA, device, what to do with a bad tile.
        layout: the run with ``stacking/`` and the base models; its dataset's test tiles are
            predicted unless ``config.data`` names another folder.

    Returns:
        The manifest written to ``OUT/manifest.json``; ``{"skipped": reason}`` when the
        stage is disabled, or when the run's own dataset has no test tiles.

    Raises:
        FileNotFoundError: no stacking or base model (says which command to run).
        DatasetError: an unreadable dataset or tile with ``on_error="fail"``.
        InputError: no test tile in ``config.data``.
    """
    started = time.perf_counter()
    data = config.data if config.data is not None else layout.data
    if not config.enabled:
        say("predict: disabled ([predict] enabled = false); skipped")
        return {"skipped": "disabled"}
    catalog, problems = scan_catalog(data)
    if not catalog.test:
        if config.data is None:
            say(f"predict: no test tiles in {data}; skipped")
            return {"skipped": "no test tiles"}
        raise InputError(f"{data}: no test tiles (tiles without a kelp mask) to predict")
    problems = [p for p in problems if p.tile_id not in _train_ids(catalog, config, layout)]
    if problems and config.on_error == "fail":
        raise DatasetError(problems)
    run = layout.root
    meta, record, decision_record = load_meta(run)
    stacking = read_json(layout.stacking / "manifest.json", "rerun `kelp stack --force`")
    decision = _decision(decision_record)
    records = catalog.test
    listed = {r.tile_id for r in records}  # a problem of a listed tile is only a warning
    skipped = [
        {"tile_id": p.tile_id, "path": str(p.path), "reason": p.message}
        for p in problems
        if p.tile_id not in listed
    ]
    warnings = [str(p) for p in problems if p.tile_id in listed]
    for warning in warnings:
        say(f"[yellow]warning:[/yellow] {warning}")
    ensemble = BaseEnsemble(run, stacking, config.tta, config.device)
    out_dir = config.out if config.out is not None else layout.predictions
    key = _key(layout, stacking, decision_record, config.tta)
    _open(out_dir, key)
    todo = [r for r in records if not _mask_path(out_dir, r).is_file()]
    client = current()
    if client is None:
        masks = _Masks(out_dir, config.on_error, meta, decision, ensemble.inputs, skipped)
        _stream_masks(todo, ensemble, config, masks, available_cores())
    elif todo:
        skipped += _on_cluster(client, todo, _Task(run, stacking, config, out_dir), ensemble)
    empty = _read_empty(out_dir)  # readable tiles that got an all-zero mask, and why
    written = [path for r in records if (path := _mask_path(out_dir, r)).is_file()]
    tar = pack_submission(written, out_dir / "submission.tar")
    seconds = time.perf_counter() - started
    manifest = {
        "stage": "predict",
        "key": key,
        "kelp_version": __version__,
        "data": str(data.resolve()),
        "n_tiles": len(written),
        "skipped": skipped,
        "empty_masks": dict(sorted(empty.items())),
        "warnings": warnings,
        "models": list(record["models"]),
        "meta": record["meta"],
        "decision": decision_record,
        "ensemble": ensemble.describe(),
        "submission": str(tar),
        "seconds": round(seconds, 3),
    }
    if empty:
        with atomic_path(out_dir / _EMPTY) as tmp:
            tmp.write_text(json.dumps(dict(sorted(empty.items())), indent=2))
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    (out_dir / _PARTIAL).unlink(missing_ok=True)
    shutil.rmtree(out_dir / _NOTES, ignore_errors=True)
    if empty:
        say(f"[yellow]warning:[/yellow] {len(empty)} tile(s) got an all-zero mask (see manifest)")
    for s in skipped:
        say(f"[red]missing from {tar.name}:[/red] {s['path']}: {s['reason']}")
    say(f"{len(written)} masks in {out_dir}, packed into {tar} ({seconds:.1f} s)")
    return manifest


def _stream_masks(
    todo: Sequence[TileRecord],
    ensemble: BaseEnsemble,
    config: PredictConfig,
    masks: "_Masks",
    cores: int,
    threads: int | None = None,
) -> None:
    """Predict ``todo`` and write their masks, on ``cores`` cores (see the module docstring).

    ``threads``: every library on that many threads (default: as loaded, or half the cores
    each when two families overlap)."""
    lanes = 2 if config.overlap and cores >= 2 and len(ensemble.names) > 1 else 1
    if threads is None and lanes > 1:
        threads = cores // lanes
    # the loader's workers start first, before any thread of this process
    with (
        prepared_tiles(todo, ensemble.inputs, _workers(config.num_workers, cores)) as tiles,
        ensemble.threads(threads),
        Lanes(ensemble.names, lanes) as running,
    ):
        done = stream_logits(ensemble, tiles, running, _batch_size(config.batch_size, ensemble))
        for tile, logits in track(done, f"predicting {len(todo)} tiles", total=len(todo)):
            masks.write(tile, logits)


@dataclass(frozen=True)
class _Task:
    """What a cluster worker needs to predict tiles of this run (the tiles come apart)."""

    run: Path
    stacking: dict[str, Any]
    config: PredictConfig
    out_dir: Path


def _on_cluster(
    client: Any, todo: Sequence[TileRecord], task: _Task, ensemble: BaseEnsemble
) -> list[dict[str, Any]]:
    """Predict ``todo`` as tasks on ``client``'s cluster; the unreadable tiles left out."""
    threads = total_threads(client)
    size = max(1, min(16, -(-len(todo) // (4 * threads))))  # 4 tasks per thread at least
    chunks = [tuple(todo[i : i + size]) for i in range(0, len(todo), size)]
    cuda = ensemble.cnn is not None and ensemble.cnn.device.type == "cuda"
    resources = gpu_resources(client, "the CNN") if cuda else None
    work = functools.partial(_predict_task, task)
    skipped: list[dict[str, Any]] = []
    tasks = run_tasks(work, chunks, in_flight=2 * threads, resources=resources)
    for _, future in track(tasks, f"predicting {len(todo)} tiles on the cluster", len(chunks)):
        skipped += future.result()  # a tile's error with on_error="fail" stops here
    say(f"{len(todo)} tiles predicted on the cluster ({len(chunks)} tasks)")
    return skipped


_loaded = threading.local()  # per worker thread: the models of the last task's run


def _predict_task(task: _Task, records: tuple[TileRecord, ...]) -> list[dict[str, Any]]:
    """Predict ``records`` on a cluster worker, one thread; their masks are written here."""
    config = task.config
    ident = (str(task.run), task.stacking["key"], config.tta, config.device)
    if getattr(_loaded, "ident", None) != ident:
        _loaded.ident = None  # a failed load leaves nothing half set
        ensemble = BaseEnsemble(task.run, task.stacking, config.tta, config.device)
        meta, _, decision_record = load_meta(task.run)
        _loaded.models = (ensemble, meta, _decision(decision_record))
        _loaded.ident = ident
    ensemble, meta, decision = _loaded.models
    skipped: list[dict[str, Any]] = []
    masks = _Masks(task.out_dir, config.on_error, meta, decision, ensemble.inputs, skipped)
    one = config.model_copy(update={"num_workers": 0})  # no child processes in a worker
    with hushed():  # the client draws the bar; warnings still print
        _stream_masks(records, ensemble, one, masks, cores=1, threads=1)
    return skipped


def _decision(record: dict[str, Any]) -> Decision:
    """The post-processing of ``RUN/stacking/decision.json``."""
    return Decision(
        threshold=record["threshold"],
        land_mask=record["land_mask"],
        min_area=record["min_area"],
        morphology=record["morphology"],
    )


def _mask_path(out_dir: Path, record: TileRecord) -> Path:
    return out_dir / f"{record.tile_id}_kelp.tif"


def _batch_size(choice: int | Literal["auto"], ensemble: BaseEnsemble) -> int:
    """CNN batch size: ``auto`` batches on a GPU only (on the CPU it is no faster)."""
    if choice != "auto":
        return choice
    return 8 if ensemble.cnn is not None and ensemble.cnn.device.type == "cuda" else 1


def _workers(choice: int | Literal["auto"], cores: int) -> int:
    """Loader worker processes: ``auto`` only where the models leave cores to spare."""
    if choice != "auto":
        return choice
    return 0 if cores <= 2 else min(2, cores - 2)


class _Masks:
    """Writes each tile's mask, or what ``on_error`` says for a tile that has none."""

    def __init__(
        self,
        out_dir: Path,
        on_error: Literal["fail", "skip"],
        meta: Any,
        decision: Decision,
        inputs: TileInputs,
        skipped: list[dict[str, Any]],
    ) -> None:
        self.out_dir = out_dir
        self.on_error = on_error
        self.meta = meta
        self.decision = decision
        self.inputs = inputs
        self.skipped = skipped

    def write(self, tile: PreparedTile, logits: Logits) -> None:
        """Write ``tile``'s mask (all zero when it cannot be predicted), or skip it.

        Raises:
            DatasetError: an unreadable tile with ``on_error="fail"``.
            Exception: what stopped a readable tile, with ``on_error="fail"``.
        """
        rec = tile.record
        path = _mask_path(self.out_dir, rec)
        if tile.problem is not None:
            if self.on_error == "fail":
                error_path = tile.error_path or rec.image
                raise DatasetError([Problem(error_path, tile.problem, rec.tile_id)])
            if tile.shape is None:  # unreadable: named, left out, and `kelp predict` exits 1
                self.skipped.append(
                    {"tile_id": rec.tile_id, "path": str(tile.error_path), "reason": tile.problem}
                )
                return
            say(
                f"[yellow]warning:[/yellow] {tile.error_path}: {tile.problem}; writing an "
                "all-zero mask"
            )
            _note_empty(self.out_dir, rec.tile_id, tile.problem)  # readable, nothing to use
            write_mask(path, np.zeros(tile.shape, np.uint8), tile.transform)
            return
        try:
            mask = self._mask(tile, logits)
        except Exception as error:  # a readable tile never goes missing from the submission
            if self.on_error == "fail":
                raise
            reason = tile.failure or f"{type(error).__name__}: {error}"
            say(
                f"[yellow]warning:[/yellow] {rec.image}: cannot be predicted ({reason}); "
                "writing an all-zero mask"
            )
            mask = np.zeros(_shape(tile), np.uint8)
            _note_empty(self.out_dir, rec.tile_id, reason)
        write_mask(path, mask, tile.transform)

    def _mask(self, tile: PreparedTile, logits: Logits) -> np.ndarray:
        if tile.failure is not None:
            if self.on_error == "fail":  # the error itself, as the tile alone raises it
                prepare_tile(tile.record, self.inputs, catch=False)
            raise RuntimeError(tile.failure)
        if isinstance(logits, Exception):
            raise logits
        land = _given(tile.land, tile, "land mask")
        fused = fused_probability(self.meta, _given(logits, tile, "logits"), land)
        return self.decision.apply(fused, land)


def _shape(tile: PreparedTile) -> tuple[int, int]:
    return _given(tile.shape, tile, "shape")


def _given(value: Any, tile: PreparedTile, what: str) -> Any:
    if value is None:  # a bug, not bad input: every path that reaches here sets it
        raise ValueError(f"tile {tile.record.tile_id}: no {what}")
    return value


def _train_ids(catalog: Catalog, config: PredictConfig, layout: RunLayout) -> set[str]:
    """Train tiles, whose problems are not predict's: the listed ones, and on the run's own
    dataset those its folds stage skipped."""
    ids = {r.tile_id for r in catalog.train}
    if config.data is None and layout.folds.is_file():
        ids |= {t for t, _ in read_folds(layout.folds).skipped}
    return ids


def _read_empty(out_dir: Path) -> dict[str, str]:
    """Tiles that got an all-zero mask, and why: ``empty_masks.json`` of a finished run and
    the notes of an unfinished one (written by whichever process wrote the mask)."""
    empty = {str(k): str(v) for k, v in (read_marker(out_dir / _EMPTY) or {}).items()}
    notes = out_dir / _NOTES
    if notes.is_dir():
        empty.update({p.stem: p.read_text() for p in sorted(notes.glob("*.txt"))})
    return empty


def _note_empty(out_dir: Path, tile_id: str, reason: str) -> None:
    """Record why ``tile_id`` gets an all-zero mask, before the mask is written."""
    (out_dir / _NOTES).mkdir(exist_ok=True)
    with atomic_path(out_dir / _NOTES / f"{tile_id}.txt") as tmp:
        tmp.write_text(reason)


def _open(out_dir: Path, key: str) -> None:
    """Keep masks made under ``key``; remove masks (and the tar) made under another."""
    out_dir.mkdir(parents=True, exist_ok=True)
    held = None
    for marker in (out_dir / "manifest.json", out_dir / _PARTIAL):
        if marker.is_file():
            held = json.loads(marker.read_text()).get("key")
            break
    if held != key:
        stale = list(out_dir.glob("*_kelp.tif"))
        if stale:
            say(f"{out_dir}: removing {len(stale)} mask(s) made with other models or decision")
        stale_files = [out_dir / n for n in ("submission.tar", "manifest.json", _EMPTY)]
        for path in [*stale, *stale_files]:
            path.unlink(missing_ok=True)
        shutil.rmtree(out_dir / _NOTES, ignore_errors=True)
    with atomic_path(out_dir / _PARTIAL) as tmp:
        tmp.write_text(json.dumps({"key": key}))
