"""Quality on the hard preset: nested OOF and held-out test Dice of every model, baselines too.

    python benchmarks/quality.py --seed 0 --out runs/quality-s0      # one generator seed
    python benchmarks/quality.py --table runs/quality-s0/quality.json runs/quality-s1/quality.json

One seed: synthesises ``--tiles`` tiles of ``--size`` px with ``kelp data synth --preset
hard`` (test tiles from held-out places), runs ``kelp run`` with the CPU-sized config written
to ``OUT/quality.toml`` (four tree models, a U-Net trained on crops for a fixed number of
steps, ``meta = "best"``, 5 area-grouped folds), trains the published recipes of
:mod:`kelp.baselines` on the same ``folds.csv``, and writes ``OUT/quality.json`` with one row
per model:

- ``oof_nested``: global Dice over the out-of-fold tiles, each fold at the threshold chosen
  on the other folds (for the fused masks: threshold and post-processing, as
  ``decision.json`` reports);
- ``test``: global Dice on the held-out test tiles, at the threshold chosen on all
  out-of-fold tiles (for a base model: its fold ensemble, the mean of its fold models'
  logits, as ``kelp predict`` feeds the stacker; for the fused masks: ``RUN/predictions``);
- ``no_kelp_marked``: share of pixels marked kelp on the test tiles of the preset's no-kelp
  areas (inland, DEM missing, all land, all cloud), where any mark is wrong.

Every step resumes: the dataset, the run (``kelp run`` skips what is done), the baselines
(per fold) and the scores are kept in ``OUT``; an interrupted seed is finished by running the
same command again. ``--table`` prints several seeds side by side with the mean and spread.

A tree variant is tried on a finished seed, on its folds and (unless the fragment has a
``[features]`` table, then rebuilt) its feature table:

    python benchmarks/quality.py --seed 0 --out runs/quality-s0 --variant lr05 --toml lr05.toml

trains ``kelp train-trees`` with the ``[tabular]`` table of ``lr05.toml`` in
``OUT/variants/lr05`` and adds rows ``<model> (lr05)`` to ``quality.json``, scored the same
way (nested OOF; test through the fold ensemble at the pooled OOF threshold).
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = """\
name = "quality"
runs_dir = "{runs_dir}"

[data]
path = "{data}"

[folds]
k = {k}
seed = 0

[features]
workers = 2

[tabular]
models = [{models}]
n_jobs = 2

[cnn]
encoder = "resnet18"
encoder_depth = 4
decoder_channels = [64, 32, 16, 16]
epochs = {epochs}
steps_per_epoch = {steps}
crop_size = 128
warmup_epochs = 1.0
lr = 2e-3
batch_size = 8
patience = 0
tta = false
num_workers = 0

[stacking]
meta = "best"

[predict]
on_error = "skip"
"""

NO_KELP_KINDS = ("inland", "no_dem", "all_land", "all_cloud")


def _kelp(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "kelp", "-q", *args], check=True)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)


def _timed(out: Path, name: str, step: Any, inputs: Any = None) -> Any:
    """Run ``step()`` once per ``inputs``: its result, seconds and inputs are kept in
    ``OUT/<name>.json`` (a result kept for other inputs is recomputed)."""
    path = out / f"{name}.json"
    if path.is_file():
        kept = _read_json(path)
        if kept.get("inputs") == inputs:
            return kept
    started = time.perf_counter()
    result = step()
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["inputs"] = inputs
    _write_json(path, result)
    return result


def _run_keys(run: Path) -> dict[str, Any]:
    """The stacking and predict stages' own keys: scores of the run change with them."""
    return {
        stage: _read_json(run / stage / "manifest.json").get("key")
        for stage in ("stacking", "predictions")
    }


def _kinds(data: Path) -> dict[str, str]:
    """Tile id -> the area's kind (``coast`` when the dataset does not say)."""
    with (data / "synthetic_areas.csv").open(newline="") as f:
        return {row["tile_id"]: row.get("kind") or "coast" for row in csv.DictReader(f)}


def score_base_models(run: Path, data: Path) -> dict[str, Any]:
    """Test Dice of each base model's fold ensemble, the mean logit and the meta-model alone.

    Each at the threshold best on its pooled out-of-fold counts (``comparison.json``).
    """
    from kelp.data.catalog import open_catalog
    from kelp.data.io import read_mask
    from kelp.data.tile import load_tile
    from kelp.features.channels import land_mask
    from kelp.maps import sigmoid
    from kelp.stacking.predict import BaseEnsemble
    from kelp.stacking.stack import fused_probability, load_meta
    from kelp.thresholds import ThresholdCounts

    stacking = _read_json(run / "stacking" / "manifest.json")
    comparison = _read_json(run / "stacking" / "comparison.json")["models"]
    meta, record, _ = load_meta(run)
    ensemble = BaseEnsemble(run, stacking, device="cpu")
    final = f"stack-{record['meta']}"
    names = [*ensemble.names, "mean-logit", final]
    counts = {name: ThresholdCounts() for name in names}
    for rec in open_catalog(data).test:
        tile = load_tile(rec, ensemble.band_order)
        truth = read_mask(data / "test_kelp" / f"{rec.tile_id}_kelp.tif")
        logits = ensemble.logits(tile)
        probs = [sigmoid(z) for z in logits]
        probs += [sigmoid(logits.mean(axis=0)), fused_probability(meta, logits, land_mask(tile))]
        for name, prob in zip(names, probs, strict=True):
            counts[name].update(prob, truth)
    rows = {}
    for name in names:
        # with meta = "best" the OOF row is the nested figure of choosing the meta-model;
        # the test row is the meta-model it chose on all folds, as `kelp predict` uses it
        label, oof = name, comparison[name]
        if name == final and "stack-best" in comparison:
            label, oof = f"stack-best ({record['meta']})", comparison["stack-best"]
        threshold = comparison[name]["overall"]["best"]["threshold"]
        rows[label] = {
            "oof_nested": oof["nested"]["dice"],
            "threshold": threshold,
            "test": counts[name].at(threshold).dice,
        }
    return {"rows": rows}


def score_tree_run(run: Path, data: Path) -> dict[str, Any]:
    """Nested OOF and test Dice of every tree model of a run that has no stacking."""
    from kelp.data.catalog import open_catalog
    from kelp.data.io import read_mask
    from kelp.data.tile import load_tile
    from kelp.features.manifest import read_build
    from kelp.features.stack import build_channels
    from kelp.maps import MapStore, sigmoid
    from kelp.oof_report import nested_entry
    from kelp.tabular.predict import fold_logits, load_fold_models, pixel_rows
    from kelp.thresholds import ThresholdCounts

    with (run / "folds.csv").open(newline="") as f:
        fold_of = {r["tile_id"]: int(r["fold"]) for r in csv.DictReader(f) if r["fold"] != ""}
    trees = [p for p in (run / "oof").iterdir() if (run / "tabular" / p.name).is_dir()]
    names = sorted(p.name for p in trees if (p / "manifest.json").is_file())
    rows: dict[str, Any] = {}
    build = read_build(run / "features")
    catalog = open_catalog(data)
    truths = {r.tile_id: r for r in catalog.train}
    for name in names:
        store = MapStore(run / "oof" / name)
        by_fold = {k: ThresholdCounts() for k in sorted(set(fold_of.values()))}
        for tile_id, k in fold_of.items():
            if tile_id in truths:
                truth = read_mask(truths[tile_id].mask)
                by_fold[k].update(sigmoid(store.read(tile_id)), truth)
        pooled = by_fold[0]
        for k in list(by_fold)[1:]:
            pooled = pooled + by_fold[k]
        threshold, _ = pooled.best()
        models = list(load_fold_models(run, name).values())
        test = ThresholdCounts()
        for rec in catalog.test:
            tile = load_tile(rec, build.band_order)
            stack, _ = build_channels(tile, build.config)
            prob = sigmoid(fold_logits(models, pixel_rows(stack)).reshape(tile.shape))
            test.update(prob, read_mask(data / "test_kelp" / f"{rec.tile_id}_kelp.tif"))
        nested = nested_entry(by_fold)
        assert nested is not None
        rows[name] = {
            "oof_nested": nested["dice"],
            "threshold": threshold,
            "test": test.at(threshold).dice,
        }
    return {"rows": rows}


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    """Train and score a tree variant on a finished seed's folds (see the module docstring)."""
    import shutil
    import tomllib

    out = args.out.resolve()
    data, run = out / "data", out / "quality"
    result = _read_json(out / "quality.json")
    fragment = tomllib.loads(args.toml.read_text())
    vrun = out / "variants" / args.variant
    vrun.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.toml, vrun / "variant.toml")
    if not (vrun / "folds.csv").is_file():
        shutil.copyfile(run / "folds.csv", vrun / "folds.csv")
    if "features" in fragment:
        _kelp("build-features", str(data), "--folds", str(vrun / "folds.csv"),
              "--out", str(vrun / "features"), "--config", str(args.toml))  # fmt: skip
    elif not (vrun / "features").exists():
        (vrun / "features").symlink_to(run / "features")
    started = time.perf_counter()
    _kelp("train-trees", str(data), "--run", str(vrun), "--config", str(args.toml))
    seconds = time.perf_counter() - started
    scores = _timed(vrun, "test_trees", lambda: score_tree_run(vrun, data))
    for name, row in scores["rows"].items():
        result["rows"][f"{name} ({args.variant})"] = {
            "oof_nested": row["oof_nested"],
            "test": row["test"],
        }
    result.setdefault("variants", {})[args.variant] = {
        "toml": args.toml.read_text(),
        "train_seconds": round(seconds, 1),
    }
    _write_json(out / "quality.json", result)
    return result


def score_masks(run: Path, data: Path) -> dict[str, Any]:
    """The fused masks: test Dice of ``kelp predict``'s, and marks on no-kelp tiles.

    Marks are counted per area kind on the test masks and on the out-of-fold masks of the
    train tiles (``stacking/oof/`` under the decision, as ``kelp predict`` would draw them
    with the fold model that held the tile out: honest, and the only look at kinds that the
    held-out places lack).
    """
    from kelp.data.catalog import open_catalog
    from kelp.data.io import read_mask
    from kelp.data.tile import load_tile
    from kelp.features.channels import land_mask
    from kelp.maps import MapStore
    from kelp.metrics import Counts
    from kelp.stacking.postprocess import Decision

    kinds = _kinds(data)
    marks: dict[str, dict[str, list[int]]] = {"test": {}, "oof": {}}

    def mark(where: str, tile_id: str, pred: np.ndarray) -> None:
        kind = kinds.get(tile_id, "coast")
        if kind in NO_KELP_KINDS:
            seen = marks[where].setdefault(kind, [0, 0, 0])
            seen[0] += int(pred.sum())
            seen[1] += pred.size
            seen[2] += 1

    total = Counts(tp=0, fp=0, fn=0, tn=0)
    for path in sorted((run / "predictions").glob("*_kelp.tif")):
        pred = read_mask(path).astype(bool)
        truth = read_mask(data / "test_kelp" / path.name).astype(bool)
        tp = int((pred & truth).sum())
        total = total + Counts(
            tp=tp, fp=int(pred.sum()) - tp, fn=int(truth.sum()) - tp, tn=int((~pred & ~truth).sum())
        )
        mark("test", path.name.removesuffix("_kelp.tif"), pred)
    record = _read_json(run / "stacking" / "decision.json")
    decision = Decision(
        **{f: record[f] for f in ("threshold", "land_mask", "min_area", "morphology")}
    )
    store = MapStore(run / "stacking" / "oof")
    for rec in open_catalog(data).train:
        if kinds.get(rec.tile_id) in NO_KELP_KINDS and store.has(rec.tile_id):
            land = land_mask(load_tile(rec))
            mark("oof", rec.tile_id, decision.apply(store.read(rec.tile_id), land).astype(bool))
    return {
        "test": total.dice,
        "oof_nested": record["dice"],
        "oof_in_sample": record["in_sample"]["dice"],
        "no_kelp": {
            where: {k: {"marked": m / n, "tiles": t} for k, (m, n, t) in by_kind.items()}
            for where, by_kind in marks.items()
        },
    }


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """One generator seed end to end; returns what is written to ``quality.json``."""
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "metadata.csv").is_file():
        sizes = ("--tiles", str(args.tiles), "--size", str(args.size))
        _kelp("data", "synth", "--out", str(data), *sizes, "--seed", str(args.seed),
              "--preset", args.preset)  # fmt: skip
    config = out / "quality.toml"
    models = ", ".join(f'"{m}"' for m in args.models.split(","))
    values = {"runs_dir": out, "data": data, "k": args.k, "models": models}
    config.write_text(CONFIG.format(**values, epochs=args.epochs, steps=args.steps))
    run = out / "quality"
    _kelp("run", str(config))

    def baselines() -> dict[str, Any]:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before scikit-learn loads
        from kelp.baselines import run_baselines

        return run_baselines(data, run / "folds.csv", out / "baselines", seed=args.seed,
                             max_rows=args.baseline_rows)  # fmt: skip

    base = _timed(out, "baselines", baselines)
    keys = _run_keys(run)
    models_scores = _timed(out, "test_models", lambda: score_base_models(run, data), keys)
    masks = _timed(out, "test_masks", lambda: score_masks(run, data), keys)
    rows = {
        name: {"oof_nested": r["oof_nested"], "test": r["test"]}
        for name, r in base["baselines"].items()
    }
    rows.update(models_scores["rows"])
    rows["fused masks"] = {"oof_nested": masks["oof_nested"], "test": masks["test"]}
    result = {
        "seed": args.seed,
        "preset": args.preset,
        "tiles": args.tiles,
        "size": args.size,
        "areas": len({row for row in _area_ids(data)}),
        "rows": rows,
        "no_kelp": masks["no_kelp"],
        "fused_oof_in_sample": masks["oof_in_sample"],
        "run_seconds": _read_json(run / "run.json")["seconds"],  # all stages, resumed or not
        "stage_seconds": _stage_seconds(run),
        "cnn_fold_minutes": _cnn_fold_minutes(run),
        "baseline_seconds": base.get("seconds"),
    }
    _write_json(out / "quality.json", result)
    return result


def _area_ids(data: Path) -> list[str]:
    with (data / "synthetic_areas.csv").open(newline="") as f:
        return [row["aoi_id"] for row in csv.DictReader(f)]


def _cnn_fold_minutes(run: Path) -> list[float]:
    """Minutes each CNN fold trained (its epochs' wall time, validation included)."""
    minutes = []
    for log in sorted((run / "cnn").glob("fold=*/log.csv")):
        with log.open(newline="") as f:
            minutes.append(round(sum(float(r["seconds"]) for r in csv.DictReader(f)) / 60, 2))
    return minutes


def _stage_seconds(run: Path) -> dict[str, Any]:
    record = _read_json(run / "run.json")
    stages = record.get("stages", {})
    return {name: s.get("seconds") for name, s in stages.items() if isinstance(s, dict)}


def print_table(results: list[dict[str, Any]]) -> None:
    """One row per model: nested OOF and test Dice per seed, then the mean and spread.

    ``stack-best (<meta>)`` rows are one row whatever meta-model each seed chose.
    """
    chosen = [
        n[len("stack-best (") : -1]
        for r in results
        for n in r["rows"]
        if n.startswith("stack-best (")
    ]
    label = f"stack-best ({' / '.join(dict.fromkeys(chosen))})"  # each meta-model once
    for r in results:  # same order, one name for the stack-best row
        r["rows"] = {label if n.startswith("stack-best (") else n: v for n, v in r["rows"].items()}
    names = list(dict.fromkeys(n for r in results for n in r["rows"]))
    seeds = [str(r["seed"]) for r in results]
    head = " | ".join(f"OOF s{s} | test s{s}" for s in seeds)
    print(f"| model | {head} | test mean ± sd |")
    print("|---|" + "---|" * (2 * len(seeds) + 1))
    for name in names:
        cells, tests = [], []
        for r in results:
            row = r["rows"].get(name)
            if row is None:
                cells += ["—", "—"]
                continue
            cells += [f"{row['oof_nested']:.4f}", f"{row['test']:.4f}"]
            tests.append(row["test"])
        spread = statistics.stdev(tests) if len(tests) > 1 else 0.0
        mean = f"{np.mean(tests):.4f} ± {spread:.4f}" if tests else "—"
        print(f"| {name} | {' | '.join(cells)} | {mean} |")
    for r in results:
        shown = "; ".join(
            f"{where} {kind} {100 * v['marked']:.3f} % ({v['tiles']} tiles)"
            for where, by_kind in r["no_kelp"].items()
            for kind, v in sorted(by_kind.items())
        )
        print(
            f"\nseed {r['seed']}: {r['tiles']} tiles of {r['size']} px from {r['areas']} areas; "
            f"pixels marked kelp on no-kelp tiles: {shown or 'none'}; kelp run "
            f"{r['run_seconds'] / 60:.1f} min, baselines "
            f"{(r['baseline_seconds'] or 0) / 60:.1f} min; CNN training per fold "
            f"{', '.join(f'{m:.1f}' for m in r.get('cnn_fold_minutes', []))} min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default runs/quality-s<SEED>")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--preset", default="hard", choices=("default", "hard"))
    parser.add_argument("--tiles", type=int, default=260, help="train + test tiles")
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40, help="CNN steps per epoch")
    parser.add_argument("--models", default="lightgbm,xgboost,catboost,random_forest")
    parser.add_argument("--baseline-rows", type=int, default=8_000_000)
    parser.add_argument("--table", type=Path, nargs="+", help="print these quality.json files")
    parser.add_argument("--variant", default=None, help="name of a tree variant to try")
    parser.add_argument("--toml", type=Path, default=None, help="the variant's config fragment")
    args = parser.parse_args()
    if args.table:
        print_table([_read_json(p) for p in args.table])
        return
    args.out = args.out or Path(f"runs/quality-s{args.seed}")
    if args.variant:
        if args.toml is None:
            parser.error("--variant needs --toml FILE with a [tabular] table")
        print_table([run_variant(args)])
        return
    print_table([run_once(args)])


if __name__ == "__main__":
    main()
