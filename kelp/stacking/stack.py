"""`kelp stack`: cross-validate meta-models on out-of-fold maps, choose post-processing,
fit the final meta-model.

Reads ``RUN/folds.csv`` and ``RUN/oof/<model>/`` (from ``kelp train-trees`` and
``kelp train-cnn``) and writes::

    RUN/stacking/comparison.json, comparison.csv   global Dice of each base model, the
                                                   simple logit average and each meta-model,
                                                   per fold and overall, on the same tiles
    RUN/stacking/oof/                              the chosen meta-model's cross-validated
                                                   fused P(kelp) per train tile
    RUN/stacking/sweep.csv                         post-processing grid ranked by Dice
    RUN/stacking/decision.json                     the chosen threshold / land mask / area
    RUN/stacking/grid.png                          tiles across the Dice range, 4 panels each
    RUN/stacking/meta.joblib, meta.json            the meta-model fit on all OOF pixels
    RUN/stacking/manifest.json                     config, inputs, results; written last

Honesty: a meta-model is scored on fold k after being fit only on pixels of the other
folds' tiles, and those pixels' inputs were themselves predicted by base models that never
saw them (checked by :func:`kelp.stacking.inputs.open_base_maps`). Post-processing is chosen
on the cross-validated fused maps, never on maps a meta-model was fit on.
"""

import functools
import json
import operator
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from rich.table import Table

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say, track
from kelp.data.catalog import open_catalog
from kelp.data.folds import read_folds
from kelp.data.tile import Tile, load_tile
from kelp.errors import StaleInputError
from kelp.features.channels import land_mask
from kelp.features.manifest import FeatureBuild, read_build
from kelp.features.sampling import sample_pixels
from kelp.layout import file_sha256, short_hash
from kelp.maps import MapStore, finish_store, open_store, sigmoid
from kelp.metrics import Counts
from kelp.oof_report import build_report, write_report
from kelp.stacking.config import MetaName, StackConfig
from kelp.stacking.inputs import BaseMaps, open_base_maps
from kelp.stacking.meta import MetaModel, create_meta, feature_names, meta_features
from kelp.stacking.postprocess import (
    Decision,
    Sweep,
    coarse_grid,
    decision_record,
    fine_grid,
    pool,
    rank,
)
from kelp.stacking.visual import pick_across_range, prediction_grid
from kelp.thresholds import ThresholdCounts

__all__ = ["comparison_table", "fused_probability", "load_meta", "stack"]

AVERAGE = "mean-logit"


@dataclass
class _Rows:
    """Sampled out-of-fold pixels of one tile."""

    fold: int
    plain: np.ndarray  # (N, M) logits
    spatial: np.ndarray | None  # (N, F) with neighbourhood aggregates and land
    label: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True)
class _Truth:
    """A tile's true mask and land mask, bit-packed: read from disk once per stage."""

    shape: tuple[int, int]
    kelp: np.ndarray
    land: np.ndarray

    @classmethod
    def of(cls, tile: Tile) -> "_Truth":
        kelp = tile.mask if tile.mask is not None else np.zeros(tile.shape, np.uint8)
        return cls(tile.shape, np.packbits(kelp.astype(bool)), np.packbits(land_mask(tile)))

    def truth(self) -> np.ndarray:
        """``(H, W) uint8`` 0/1 kelp."""
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.kelp, count=n).reshape(self.shape)

    def land_mask(self) -> np.ndarray:
        """``(H, W) bool``."""
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.land, count=n).reshape(self.shape).astype(bool)


def _key(config: StackConfig, base: BaseMaps, folds_sha: str, build: FeatureBuild) -> str:
    payload = [
        config.model_dump(mode="json"),
        folds_sha,
        dict(zip(base.names, base.keys, strict=True)),
        build.stack_hash,
        build.band_order,
        __version__,
    ]
    return short_hash(payload)


def _fit(name: MetaName, rows: list[_Rows], config: StackConfig) -> MetaModel:
    meta = create_meta(name, config.seed, config.lightgbm)
    X = np.concatenate(
        [r.spatial if meta.spatial and r.spatial is not None else r.plain for r in rows]
    )
    y = np.concatenate([r.label for r in rows])
    w = np.concatenate([r.weight for r in rows])
    if not y.any():
        raise ValueError(
            "no kelp pixel among the out-of-fold pixels the meta-model is fit on: the "
            "stacker needs train tiles with kelp in every fold but one"
        )
    return meta.fit(X, y, w)


def fused_probability(meta: MetaModel, logits: np.ndarray, land: np.ndarray) -> np.ndarray:
    """``(H, W) float32`` fused P(kelp) of one tile from its ``(M, H, W)`` base logits."""
    planes = meta_features(logits, land, meta.spatial)
    flat = planes.reshape(planes.shape[0], -1).T
    return sigmoid(meta.predict_logit(flat).reshape(logits.shape[1:]))


def stack(
    data: str | os.PathLike[str],
    run: str | os.PathLike[str],
    config: StackConfig | None = None,
    folds: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run the stacking stage (see the module docstring for what it writes).

    Args:
        data: the dataset folder (masks and DEMs of the train tiles).
        run: the run folder.
        config: meta-models, sampling and post-processing grid.
        folds: the folds CSV; ``RUN/folds.csv`` by default.
        force: redo even when the manifest says the inputs and config are unchanged.

    Returns:
        The stage's manifest.

    Raises:
        StaleInputError: base-model maps missing or inconsistent (says which command to run).
        ValueError: no kelp to fit on.
    """
    config = config or StackConfig()
    run = Path(run)
    out = run / "stacking"
    folds_path = Path(folds) if folds is not None else run / "folds.csv"
    catalog = open_catalog(data)
    assignment = read_folds(folds_path, catalog)
    base = open_base_maps(run, assignment, folds_path, config.models)
    build = read_build(run / "features")
    if base.stack_hash != build.stack_hash:
        raise StaleInputError(
            f"the base models were trained on channel stack {base.stack_hash}, the feature "
            f"build in {build.root} is now {build.stack_hash}: retrain them "
            "(`kelp train-trees`, `kelp train-cnn`)"
        )
    folds_sha = file_sha256(folds_path)
    key = _key(config, base, folds_sha, build)
    manifest_path = out / "manifest.json"
    if not force and manifest_path.is_file():
        previous: dict[str, Any] = json.loads(manifest_path.read_text())
        if previous.get("key") == key:
            say(f"stacking is up to date in {out}")
            return previous
    started = time.perf_counter()
    records = {r.tile_id: r for r in catalog.train}
    tile_ids = sorted(base.fold_of)
    spatial = any(create_meta(m).spatial for m in {*config.compare, config.meta})

    rows: dict[str, _Rows] = {}
    truths: dict[str, _Truth] = {}
    for tile_id in track(tile_ids, "sampling out-of-fold pixels"):
        truths[tile_id] = known = _Truth.of(load_tile(records[tile_id], build.band_order))
        mask = known.truth()
        logits = base.logits(tile_id)
        sample = sample_pixels(mask, tile_id, config.sampling, config.seed)
        r, c = sample.rows, sample.cols
        rows[tile_id] = _Rows(
            fold=base.fold_of[tile_id],
            plain=logits[:, r, c].T.copy(),
            spatial=meta_features(logits, known.land_mask(), True)[:, r, c].T.copy()
            if spatial
            else None,
            label=mask[r, c],
            weight=sample.weight,
        )

    k = assignment.k
    names = [*base.names, AVERAGE, *(f"stack-{m}" for m in config.compare)]
    counts = {n: {f: ThresholdCounts() for f in range(k)} for n in names}
    fused_store = open_store(out / "oof", key)  # maps of another meta or run are removed
    for fold in range(k):
        train = [r for r in rows.values() if r.fold != fold]
        metas = {m: _fit(m, train, config) for m in config.compare}
        held_out = [t for t in tile_ids if base.fold_of[t] == fold]
        for tile_id in track(held_out, f"fold {fold}: scoring held-out tiles"):
            truth, land = truths[tile_id].truth(), truths[tile_id].land_mask()
            logits = base.logits(tile_id)
            for name, z in zip(base.names, logits, strict=True):
                counts[name][fold].update(sigmoid(z), truth)
            counts[AVERAGE][fold].update(sigmoid(logits.mean(axis=0)), truth)
            for m, meta in metas.items():
                prob = fused_probability(meta, logits, land)
                counts[f"stack-{m}"][fold].update(prob, truth)
                if m == config.meta:
                    fused_store.write(tile_id, prob, "probability")
    comparison = build_report(counts)
    write_report(out, comparison)
    for suffix in (".json", ".csv"):
        (out / f"report{suffix}").replace(out / f"comparison{suffix}")

    choice = _choose(fused_store, tile_ids, base.fold_of, truths, config)
    finish_store(
        fused_store,
        {
            "kind": "probability",
            "model": f"stack-{config.meta}",
            "folds": {t: base.fold_of[t] for t in tile_ids},
            "folds_sha256": folds_sha,
            "key": key,
        },
    )
    final = _fit(config.meta, list(rows.values()), config)
    with atomic_path(out / "meta.joblib") as tmp:
        joblib.dump(final, tmp)
    meta_record = {
        "meta": config.meta,
        "models": list(base.names),
        "keys": dict(zip(base.names, base.keys, strict=True)),
        "features": feature_names(base.names, final.spatial),
        "learned": final.describe(),
    }
    with atomic_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta_record, indent=2))
    decision = choice.decision
    _draw(fused_store, tile_ids, records, truths, decision, out / "grid.png", config.grid_tiles,
          build.band_order)  # fmt: skip
    record = decision_record(decision, choice.counts, len(tile_ids), choice.nested, choice.per_fold)
    with atomic_path(out / "decision.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    manifest = {
        "stage": "stacking",
        "key": key,
        "kelp_version": __version__,
        "config": config.model_dump(mode="json"),
        "folds": str(folds_path.resolve()),
        "folds_sha256": folds_sha,
        "stack_hash": build.stack_hash,
        "band_order": list(build.band_order),
        "models": list(base.names),
        "base_keys": dict(zip(base.names, base.keys, strict=True)),
        "meta": meta_record,
        "decision": record,
        "comparison": {
            n: {
                "dice_nested": m["nested"]["dice"] if m["nested"] else None,
                "dice_at_0.5": m["overall"]["at_0.5"]["dice"],
                "best_threshold": m["overall"]["best"]["threshold"],
                "dice_at_best": m["overall"]["best"]["dice"],
                "per_fold_dice_at_0.5": {f: e["at_0.5"]["dice"] for f, e in m["per_fold"].items()},
            }
            for n, m in comparison["models"].items()
        },
        "n_tiles": len(tile_ids),
        "seconds": round(time.perf_counter() - started, 3),
    }
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    say(
        f"decision (on out-of-fold fused maps): threshold {decision.threshold:.2f}, land mask "
        f"{'on' if decision.land_mask else 'off'}, min area {decision.min_area}, "
        f"morphology {decision.morphology}: nested global Dice {choice.nested.dice:.4f} "
        f"(each fold under the decision chosen on the others; in-sample "
        f"{choice.counts.dice:.4f})"
    )
    return manifest


@dataclass(frozen=True)
class _Choice:
    """The post-processing decision, in-sample and nested."""

    decision: Decision
    counts: Counts  # the decision on the maps it was chosen on (optimistic)
    nested: Counts  # each fold under the decision chosen on the other folds, pooled
    per_fold: dict[int, tuple[Decision, Counts]]


def _choose(
    store: MapStore,
    tile_ids: list[str],
    fold_of: dict[str, int],
    truths: dict[str, _Truth],
    config: StackConfig,
) -> _Choice:
    """Choose the decision on all folds, and score each fold under one chosen on the others.

    Two passes over the fused maps, with per-fold counts: the coarse threshold grid, then
    the fine grids around the coarse optimum of every selection (all folds, all folds but
    k), so each nested choice searches exactly the grid the final choice searches.
    """
    pp = config.postprocess
    folds = sorted({fold_of[t] for t in tile_ids})

    def run_sweep(thresholds: list[float], label: str) -> dict[int, dict[Decision, Counts]]:
        sweeps = {f: Sweep(thresholds, pp) for f in folds}
        for tile_id in track(tile_ids, label):
            known = truths[tile_id]
            sweeps[fold_of[tile_id]].update(store.read(tile_id), known.truth(), known.land_mask())
        return {f: sweep.counts for f, sweep in sweeps.items()}

    coarse = run_sweep(coarse_grid(pp.coarse_step), "post-processing: coarse thresholds")
    selections: dict[int | None, list[int]] = {None: folds}
    selections.update({f: [g for g in folds if g != f] for f in folds if len(folds) > 1})
    centres = {
        s: rank(pool([coarse[f] for f in chosen]))[0][0].threshold
        for s, chosen in selections.items()
    }
    grids = {s: fine_grid(c, pp.coarse_step, pp.fine_step) for s, c in centres.items()}
    fine = run_sweep(sorted({t for g in grids.values() for t in g}), "post-processing: refine")

    def searched(selection: int | None, fold: int) -> dict[Decision, Counts]:
        """Fold ``fold``'s counts on the grid that ``selection`` searches."""
        grid = set(grids[selection])
        extra = {d: c for d, c in fine[fold].items() if d.threshold in grid}
        return {**coarse[fold], **extra}

    everything = pool([searched(None, f) for f in folds])
    sweep = Sweep([], pp)
    sweep.counts = everything
    sweep.write_csv(store.root.parent / "sweep.csv")
    decision, counts = rank(everything)[0]
    per_fold: dict[int, tuple[Decision, Counts]] = {}
    for fold in folds:
        if fold not in selections:  # one fold only: nothing to choose on but itself
            per_fold[fold] = (decision, searched(None, fold)[decision])
            continue
        chosen, _ = rank(pool([searched(fold, f) for f in selections[fold]]))[0]
        per_fold[fold] = (chosen, searched(fold, fold)[chosen])
    nested = functools.reduce(operator.add, (c for _, c in per_fold.values()))
    return _Choice(decision, counts, nested, per_fold)


def comparison_table(report: dict[str, Any]) -> Table:
    """One row per input / fusion: the nested global Dice first (each fold at the threshold
    chosen on the other folds), then Dice at 0.5, the in-sample best threshold and its Dice
    with precision and recall there, then Dice at 0.5 on each fold."""
    models = report["models"]
    folds = sorted({f for m in models.values() for f in m["per_fold"]}, key=int)
    table = Table(
        title="out-of-fold global Dice, same tiles for every row; nested = threshold chosen on "
        "the other folds (the honest figure), in-sample = at the best threshold of the same maps",
        title_justify="left",
    )
    table.add_column("model", no_wrap=True)
    for column in ("nested", "@0.5", "best t", "in-sample", "prec", "recall"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column(f"@0.5 on folds {'/'.join(folds)}", no_wrap=True)
    for name, model in models.items():
        overall = model["overall"]
        best = overall["best"]
        nested = model.get("nested")
        table.add_row(
            name,
            f"{nested['dice']:.4f}" if nested else "-",
            f"{overall['at_0.5']['dice']:.4f}",
            f"{best['threshold']:.2f}",
            f"{best['dice']:.4f}",
            f"{best['precision']:.3f}",
            f"{best['recall']:.3f}",
            " ".join(f"{model['per_fold'][f]['at_0.5']['dice']:.3f}" for f in folds),
        )
    return table


def _draw(
    store: MapStore,
    tile_ids: list[str],
    records: dict[str, Any],
    truths: dict[str, _Truth],
    decision: Decision,
    out: Path,
    n: int,
    band_order: tuple[str, ...],
) -> None:
    """Grid of tiles across the per-tile Dice range (tiles with kelp, true or predicted)."""
    scored = []
    for tile_id in tile_ids:
        truth = truths[tile_id].truth()
        mask = decision.apply(store.read(tile_id), truths[tile_id].land_mask())
        if truth.any() or mask.any():
            scored.append((tile_id, Counts.from_arrays(mask, truth).dice))
    if not scored or n < 1:
        return
    picked = [scored[i][0] for i in pick_across_range([d for _, d in scored], n)]
    tiles = [load_tile(records[t], band_order) for t in picked]
    probs = [store.read(t) for t in picked]
    masks = [decision.apply(p, land_mask(t)) for p, t in zip(probs, tiles, strict=True)]
    prediction_grid(tiles, probs, masks, out)


def load_meta(run: str | os.PathLike[str]) -> tuple[MetaModel, dict[str, Any], dict[str, Any]]:
    """The fitted meta-model, its record and the decision of ``RUN/stacking``.

    Raises:
        FileNotFoundError: no stacking yet; says to run ``kelp stack``.
    """
    out = Path(run) / "stacking"
    if not (out / "manifest.json").is_file():
        raise FileNotFoundError(f"no stacking in {out}: run `kelp stack` first")
    meta: MetaModel = joblib.load(out / "meta.joblib")
    record = json.loads((out / "meta.json").read_text())
    decision = json.loads((out / "decision.json").read_text())
    return meta, record, decision
