"""`kelp stack`: cross-validate meta-models on out-of-fold maps, choose post-processing,
fit the final meta-model.

Reads ``RUN/folds.csv`` and ``RUN/oof/<model>/`` (from ``kelp train-trees`` and
``kelp train-cnn``) and writes::

    RUN/stacking/comparison.json, comparison.csv   global Dice of each base model, the
                                                   simple logit average and each meta-model,
                                                   per fold and overall, on the same tiles
    RUN/stacking/oof/                              the chosen meta-model's cross-validated
                                                   fused P(kelp) per train tile (with
                                                   ``meta = "best"``, the one best on all
                                                   folds; see ``StackConfig.meta``)
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

import json
import shutil
import time
from pathlib import Path
from typing import Any, cast

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say
from kelp.artifacts import read_marker
from kelp.data.folds import FoldAssignment
from kelp.data.folds_file import read_run_folds
from kelp.errors import StaleInputError
from kelp.features.manifest import FeatureBuild, read_build
from kelp.layout import RunLayout, short_hash
from kelp.maps import MapStore, finish_store, open_store
from kelp.oof_report import build_report, write_report
from kelp.stacking.choice import Choice, choose, choose_meta
from kelp.stacking.config import BEST, MetaName, StackConfig
from kelp.stacking.crossval import fit_meta as _fit
from kelp.stacking.crossval import fused_probability, score_folds
from kelp.stacking.inputs import BaseMaps, open_base_maps
from kelp.stacking.outputs import draw_grid, load_meta, stage_manifest, write_decision, write_meta
from kelp.stacking.samples import sample_rows

__all__ = ["fused_probability", "load_meta", "stack"]


def stack(config: StackConfig, layout: RunLayout, *, force: bool = False) -> dict[str, Any]:
    """Run the stacking stage (see the module docstring for what it writes).

    Args:
        config: meta-models, sampling and post-processing grid.
        layout: reads the masks and DEMs of ``layout.data``'s train tiles, ``layout.folds``,
            ``layout.features`` and ``RUN/oof``; writes ``RUN/stacking``.
        force: redo even when the manifest says the inputs and config are unchanged.

    Returns:
        The stage's manifest.

    Raises:
        StaleInputError: base-model maps missing or inconsistent (says which command to run).
        InputError: no kelp to fit on.
    """
    out = layout.stacking
    assignment, catalog = read_run_folds(layout.folds, layout.data)
    base, build = _inputs(layout, assignment, config)
    key = _key(config, base, base.folds_sha256, build)
    previous = None if force else _previous(out / "manifest.json", key)
    if previous is not None:
        say(f"stacking is up to date in {out}")
        return previous
    started = time.perf_counter()
    records = {r.tile_id: r for r in catalog.train}
    tile_ids = sorted(base.fold_of)
    rows, truths = sample_rows(tile_ids, records, base, build.band_order, config)
    # With `best`, every compared meta-model's cross-validated maps are kept until its
    # post-processed masks have been compared; then only the chosen one's stay, as `oof`.
    names = config.compare if config.meta == BEST else (cast(MetaName, config.meta),)
    stores = {m: open_store(_store_root(out, m, config), key) for m in names}
    # `_fit` is looked up here, at call time, so that tests can replace it.
    counts = score_folds(tile_ids, rows, truths, base, assignment.k, config, stores, _fit)
    choices = {
        m: choose(store, tile_ids, base.fold_of, truths, config) for m, store in stores.items()
    }
    chosen: dict[int, MetaName] | None = None
    if config.meta == BEST:
        final_meta, chosen, choice = choose_meta(choices, config.compare)
        counts[f"stack-{BEST}"] = {f: counts[f"stack-{m}"][f] for f, m in chosen.items()}
    else:
        final_meta = cast(MetaName, config.meta)
        choice = choices[final_meta]
    comparison = _write_comparison(out, build_report(counts))
    finish_store(
        stores[final_meta],
        {
            "kind": "probability",
            "model": f"stack-{final_meta}",
            "folds": {t: base.fold_of[t] for t in tile_ids},
            "folds_sha256": base.folds_sha256,
            "key": key,
        },
    )
    choice.sweep.write_csv(out / "sweep.csv")
    fused_store = _keep_only(out, stores[final_meta])
    final = _fit(final_meta, list(rows.values()), config)
    meta_record = write_meta(out, final, final_meta, base, chosen)
    draw_grid(fused_store, tile_ids, records, truths, choice.decision, out / "grid.png",
              config.grid_tiles, build.band_order)  # fmt: skip
    record = write_decision(out, choice, len(tile_ids))
    manifest = stage_manifest(
        key, config, layout.folds, base, build, meta_record, record, comparison, started
    )
    manifest["rows"] = {
        "sampled": sum(r.sampled for r in rows.values()),
        "kept": sum(len(r.label) for r in rows.values()),
        "max_rows": config.max_rows,
    }
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    say(_describe(choice))
    return manifest


def _store_root(out: Path, meta: MetaName, config: StackConfig) -> Path:
    """Where ``meta``'s cross-validated maps are written: ``oof``, or with ``best`` a
    folder per compared meta-model until the choice."""
    return out / ("oof" if config.meta != BEST else f"oof-{meta}")


def _keep_only(out: Path, store: MapStore) -> MapStore:
    """Make ``store`` (the final meta-model's maps) ``out/oof``, and remove the other
    compared meta-models' maps (of this or an earlier run)."""
    if store.root != out / "oof":
        shutil.rmtree(out / "oof", ignore_errors=True)
        store.root.replace(out / "oof")
    for stale in out.glob("oof-*"):
        shutil.rmtree(stale)
    return MapStore(out / "oof")


def _inputs(
    layout: RunLayout, assignment: FoldAssignment, config: StackConfig
) -> tuple[BaseMaps, FeatureBuild]:
    """The base models' out-of-fold maps and the feature build, checked to agree."""
    base = open_base_maps(layout, assignment, config.models)
    build = read_build(layout.features)
    if base.stack_hash != build.stack_hash:
        raise StaleInputError(
            f"the base models were trained on channel stack {base.stack_hash}, the feature "
            f"build in {build.root} is now {build.stack_hash}: retrain them "
            "(`kelp train-trees`, `kelp train-cnn`)"
        )
    return base, build


def _key(config: StackConfig, base: BaseMaps, folds_sha: str, build: FeatureBuild) -> str:
    payload = [
        config.model_dump(mode="json"),
        folds_sha,
        dict(zip(base.names, base.keys, strict=True)),
        build.stack_hash,
        build.band_order,
        __version__,
    ]
    if config.meta == BEST:  # since `best` compares post-processed masks, not raw maps
        payload.append("best-by-masks")
    return short_hash(payload)


def _previous(manifest_path: Path, key: str) -> dict[str, Any] | None:
    """The manifest of a previous run with the same key, if any."""
    previous = read_marker(manifest_path)
    return previous if previous is not None and previous.get("key") == key else None


def _write_comparison(out: Path, comparison: dict[str, Any]) -> dict[str, Any]:
    """Write ``comparison.json`` and ``comparison.csv``."""
    write_report(out, comparison)
    for suffix in (".json", ".csv"):
        (out / f"report{suffix}").replace(out / f"comparison{suffix}")
    return comparison


def _describe(choice: Choice) -> str:
    decision = choice.decision
    return (
        f"decision (on out-of-fold fused maps): threshold {decision.threshold:.2f}, land mask "
        f"{'on' if decision.land_mask else 'off'}, min area {decision.min_area}, "
        f"morphology {decision.morphology}: nested global Dice {choice.nested.dice:.4f} "
        f"(each fold under the decision chosen on the others; in-sample "
        f"{choice.counts.dice:.4f})"
    )
