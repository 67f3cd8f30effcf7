"""Benchmark `kelp train-trees`: training time per fold and dense prediction speed per model.

    python benchmarks/tabular.py                      # 200 tiles of 350 px, fold 0
    python benchmarks/tabular.py --folds all --tiles 200

Synthesises ``--tiles`` train tiles (cached under ``--cache``, shared with
``benchmarks/build_features.py``), makes 5 area-grouped folds and the default feature table
(cached too), then trains every model with the default config on the requested folds in a
temporary run folder (so nothing is ever "up to date") and prints, per model:

- training seconds per fold (rows, rounds kept);
- dense prediction on ``--predict-tiles`` held-out tiles, in tiles/s: the model alone on
  precomputed stacks; read + stack + model one after the other; and
  ``kelp.tabular.predict.predict_tiles`` end to end, which computes the next tile's stack
  in a background thread while the model predicts this one, with its ratio to the model
  alone (target >= 0.7). Out-of-fold prediction builds each stack once for all models.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from kelp._progress import set_quiet
from kelp.bands import DEFAULT_BAND_ORDER
from kelp.data.catalog import open_catalog
from kelp.data.folds import make_folds
from kelp.data.folds_file import read_folds, write_folds
from kelp.data.synth import synthesize
from kelp.data.tile import load_tile
from kelp.features.build import build_features
from kelp.features.config import FeatureConfig
from kelp.features.stack import build_channels
from kelp.layout import RunLayout
from kelp.tabular.config import TabularConfig
from kelp.tabular.predict import (
    feature_config_of,
    load_fold_models,
    pixel_rows,
    predict_pixels,
    predict_tiles,
)
from kelp.tabular.registry import parse_models
from kelp.tabular.train import train_trees

TILE = 350 * 350


def main() -> None:
    """Prepare (or reuse) the data, train, time prediction, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--folds", default="0", help="'all' or comma-separated folds")
    parser.add_argument("--models", default="all")
    parser.add_argument("--predict-tiles", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    set_quiet(True)

    data = args.cache / f"synth-{args.tiles}-{args.size}"
    if not (data / "metadata.csv").is_file():
        synthesize(data, args.tiles, seed=0, size=args.size, test_fraction=0.0)
    prepared = args.cache / f"tabular-{args.tiles}-{args.size}"
    folds = prepared / "folds.csv"
    if not folds.is_file():
        write_folds(make_folds(data, k=5), folds)
    features = prepared / "features"
    manifest = build_features(
        FeatureConfig(workers=2), RunLayout.of(prepared, data, folds=folds, features=features)
    )
    print(
        f"table: {manifest['n_rows']} rows x {len(manifest['feature_names'])} features from "
        f"{manifest['n_tiles']} tiles of {args.size}x{args.size}"
    )
    wanted = None if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    config = TabularConfig(models=parse_models(args.models), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        started = time.perf_counter()
        layout = RunLayout.of(run, data, folds=folds, features=features)
        result = train_trees(config, layout, folds=wanted)
        print(f"train-trees wall time: {time.perf_counter() - started:.1f} s")
        print("\ntraining time per fold (default parameters, 2 cores)")
        for name in config.models:
            for fold in result["folds_requested"]:
                metrics = json.loads(
                    (run / "tabular" / name / f"fold={fold}" / "metrics.json").read_text()
                )
                print(
                    f"  {name:14s} fold {fold}: {metrics['train_seconds']:7.1f} s, "
                    f"{metrics['fit_rows']} rows, {metrics['best_iteration']} rounds, "
                    f"OOF Dice@0.5 {metrics['oof']['dice_at_0.5']:.4f}"
                )
        _prediction_speed(run, data, folds, config, result["folds_requested"][0], args)


def _prediction_speed(
    run: Path, data: Path, folds: Path, config: TabularConfig, fold: int, args: argparse.Namespace
) -> None:
    catalog = open_catalog(data)
    held = set(read_folds(folds, catalog).tiles_in(fold))
    records = [r for r in catalog.train if r.tile_id in held][: args.predict_tiles]
    models = {name: load_fold_models(run, name, [fold])[fold] for name in config.models}
    feature_config = feature_config_of(next(iter(models.values())))
    stacks, seconds_stack, pixels = [], 0.0, 0
    for record in records:
        started = time.perf_counter()
        tile = load_tile(record)
        rows = pixel_rows(build_channels(tile, feature_config)[0])
        seconds_stack += time.perf_counter() - started
        stacks.append(rows)
        pixels += len(rows)
    per_tile_stack = seconds_stack / len(records)
    print(
        f"\ndense prediction on {len(records)} tiles of fold {fold} ({pixels} pixels); reading "
        f"a tile and building its stack: {per_tile_stack:.3f} s/tile"
    )
    print(f"  {'model':14s} {'px/s':>12s} {'model only':>11s} {'+ stack':>8s} "
          f"{'predict_tiles':>14s} {'ratio':>6s} (tiles/s; target ratio >= 0.7)")  # fmt: skip
    for name, model in models.items():
        started = time.perf_counter()
        for rows in stacks:
            predict_pixels(model, rows)
        seconds = time.perf_counter() - started
        rate = pixels / seconds
        serial = len(records) / (seconds + seconds_stack)
        started = time.perf_counter()
        for _ in predict_tiles(records, run, name, folds=[fold], band_order=DEFAULT_BAND_ORDER):
            pass
        overlapped = len(records) / (time.perf_counter() - started)
        model_only = len(records) / seconds
        print(f"  {name:14s} {rate:12,.0f} {model_only:11.2f} {serial:8.2f} {overlapped:14.2f} "
              f"{overlapped / model_only:6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
