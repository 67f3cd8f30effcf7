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

import hashlib
import json
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
from kelp.features.channels import land_mask
from kelp.features.sampling import sample_pixels
from kelp.maps import MapStore, sigmoid
from kelp.metrics import Counts
from kelp.oof_report import build_report, write_report
from kelp.stacking.config import MetaName, StackConfig
from kelp.stacking.inputs import BaseMaps, open_base_maps
from kelp.stacking.meta import MetaModel, create_meta, feature_names, meta_features
from kelp.stacking.postprocess import Decision, Sweep, coarse_grid, decision_record, fine_grid
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


def _key(config: StackConfig, base: BaseMaps, folds_sha: str) -> str:
    manifests = {n: s.manifest() for n, s in zip(base.names, base.stores, strict=True)}
    payload = [
        config.model_dump(mode="json"),
        folds_sha,
        {n: m.get("key", m.get("folds")) for n, m in manifests.items()},
        __version__,
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


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
        StaleMapsError: base-model maps missing or inconsistent (says which command to run).
        ValueError: no kelp to fit on.
    """
    config = config or StackConfig()
    run = Path(run)
    out = run / "stacking"
    folds_path = Path(folds) if folds is not None else run / "folds.csv"
    catalog = open_catalog(data)
    assignment = read_folds(folds_path, catalog)
    base = open_base_maps(run, assignment, folds_path, config.models)
    folds_sha = hashlib.sha256(folds_path.read_bytes()).hexdigest()
    key = _key(config, base, folds_sha)
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
        truths[tile_id] = known = _Truth.of(load_tile(records[tile_id]))
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
    fused_store = MapStore(out / "oof")
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

    decision, decision_counts = _choose(fused_store, tile_ids, truths, config)
    fused_store.write_manifest(
        {
            "kind": "probability",
            "model": f"stack-{config.meta}",
            "folds": {t: base.fold_of[t] for t in tile_ids},
            "folds_sha256": folds_sha,
            "key": key,
        }
    )
    final = _fit(config.meta, list(rows.values()), config)
    with atomic_path(out / "meta.joblib") as tmp:
        joblib.dump(final, tmp)
    meta_record = {
        "meta": config.meta,
        "models": list(base.names),
        "kinds": list(base.kinds),
        "features": feature_names(base.names, final.spatial),
        "learned": final.describe(),
    }
    with atomic_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta_record, indent=2))
    _draw(fused_store, tile_ids, records, truths, decision, out / "grid.png", config.grid_tiles)
    record = decision_record(decision, decision_counts, len(tile_ids))
    with atomic_path(out / "decision.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    manifest = {
        "stage": "stacking",
        "key": key,
        "kelp_version": __version__,
        "config": config.model_dump(mode="json"),
        "folds": str(folds_path.resolve()),
        "folds_sha256": folds_sha,
        "models": list(base.names),
        "meta": meta_record,
        "decision": record,
        "comparison": {
            n: {
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
        f"morphology {decision.morphology}: global Dice {decision_counts.dice:.4f}"
    )
    return manifest


def _choose(
    store: MapStore, tile_ids: list[str], truths: dict[str, _Truth], config: StackConfig
) -> tuple[Decision, Counts]:
    pp = config.postprocess

    def run_sweep(thresholds: list[float], label: str) -> Sweep:
        sweep = Sweep(thresholds, pp)
        for tile_id in track(tile_ids, label):
            known = truths[tile_id]
            sweep.update(store.read(tile_id), known.truth(), known.land_mask())
        return sweep

    coarse = run_sweep(coarse_grid(pp.coarse_step), "post-processing: coarse thresholds")
    centre = coarse.best()[0].threshold
    fine = run_sweep(fine_grid(centre, pp.coarse_step, pp.fine_step), "post-processing: refine")
    fine.counts.update({d: c for d, c in coarse.counts.items() if d not in fine.counts})
    fine.write_csv(store.root.parent / "sweep.csv")
    return fine.best()


def comparison_table(report: dict[str, Any]) -> Table:
    """One row per input / fusion: overall global Dice at 0.5 and at its best threshold,
    precision and recall there, then Dice at 0.5 on each fold."""
    models = report["models"]
    folds = sorted({f for m in models.values() for f in m["per_fold"]}, key=int)
    table = Table(title="out-of-fold global Dice, same tiles for every row", title_justify="left")
    table.add_column("model", no_wrap=True)
    for column in ("@0.5", "best t", "@best", "prec", "recall"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column(f"@0.5 on folds {'/'.join(folds)}", no_wrap=True)
    for name, model in models.items():
        overall = model["overall"]
        best = overall["best"]
        table.add_row(
            name,
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
    tiles = [load_tile(records[t]) for t in picked]
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
