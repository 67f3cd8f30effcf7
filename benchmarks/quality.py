"""Benchmark the out-of-fold-to-test gap: is the fused OOF figure an honest forecast of test?

    python benchmarks/quality.py --out runs/quality            # one run: data, pipeline, scores
    python benchmarks/quality.py --table runs/q-before/quality.json runs/q-after/quality.json

Synthesises (or reuses) a dataset at ``--data`` (default ``OUT/data``: ``--tiles`` tiles of
``--size`` px whose test tiles come from held-out places), runs ``kelp run`` on it with a
CPU-sized config written to ``OUT/quality.toml`` (two tree models and a small U-Net, 5
area-grouped folds), scores the test masks with ``kelp evaluate`` against ``test_kelp/`` and
writes ``OUT/quality.json``:

- ``oof_in_sample``: the Dice that ``decision.json`` reports, maximised on the very OOF maps
  it is reported on (optimistic by construction);
- ``oof_nested_threshold``: computed here from ``RUN/stacking/oof/`` (the fused OOF maps)
  with every fold's threshold chosen on the other folds, no post-processing;
- ``oof_nested``: the pipeline's own nested figure (threshold and post-processing chosen on
  the other folds), when the pipeline reports one;
- ``test``: global Dice of ``RUN/predictions`` on the held-out test tiles.

The script only reads files (``folds.csv``, ``.npy`` maps, masks), so it scores any version
of ``kelp``: run an older checkout with ``PYTHONPATH=<checkout>`` on the same ``--data`` for
a before/after comparison; ``--table`` prints several results side by side.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.01), 2)

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

[features.sampling]
n_random = 1000

[tabular]
models = [{models}]
max_rounds = 400
early_stopping_rounds = 30

[cnn]
encoder = "resnet18"
encoder_depth = 4
decoder_channels = [64, 32, 16, 16]
epochs = {epochs}
warmup_epochs = 1.0
lr = 2e-3
batch_size = 8
patience = 0
tta = false

[stacking]
meta = "logistic"
compare = ["average", "logistic"]

[predict]
on_error = "skip"
"""


def _kelp(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "kelp", "-q", *args], check=True)


def _mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1).astype(bool)


def _dice(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def nested_threshold_dice(run: Path, data: Path) -> dict[str, Any]:
    """Global Dice of the fused OOF maps, each fold's threshold chosen on the other folds."""
    with open(run / "folds.csv", newline="") as f:
        fold_of = {row["tile_id"]: int(row["fold"]) for row in csv.DictReader(f)}
    k = max(fold_of.values()) + 1
    counts = np.zeros((k, 3, len(THRESHOLDS)))  # per fold: tp, fp, fn at each threshold
    for tile_id, fold in fold_of.items():
        prob = np.load(run / "stacking" / "oof" / f"{tile_id}.npy").astype(np.float32)
        truth = _mask(data / "train_kelp" / f"{tile_id}_kelp.tif")
        pred = prob[None] >= THRESHOLDS[:, None, None]
        tp = (pred & truth).sum(axis=(1, 2))
        counts[fold] += [tp, pred.sum(axis=(1, 2)) - tp, truth.sum() - tp]
    pooled = np.zeros(3)
    chosen = []
    for fold in range(k):
        other = counts.sum(axis=0) - counts[fold]
        best = int(np.argmax(_dice(*other)))
        chosen.append(float(THRESHOLDS[best]))
        pooled += counts[fold][:, best]
    total = counts.sum(axis=0)
    return {
        "dice": float(_dice(*pooled)),
        "thresholds": chosen,
        "in_sample_best": float(_dice(*total).max()),
    }


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """Synthesise, run the pipeline, score; returns what is written to ``quality.json``."""
    out = args.out.resolve()
    data = (args.data or out / "data").resolve()
    if not (data / "metadata.csv").is_file():
        _kelp("data", "synth", "--out", str(data), "--tiles", str(args.tiles),
              "--size", str(args.size), "--seed", str(args.seed))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    config = out / "quality.toml"
    models = ", ".join(f'"{m}"' for m in args.models.split(","))
    config.write_text(
        CONFIG.format(runs_dir=out, data=data, k=args.k, models=models, epochs=args.epochs)
    )
    _kelp("run", str(config))
    run = out / "quality"
    scores = out / "test_scores.json"
    _kelp("evaluate", "--pred", str(run / "predictions"), "--truth", str(data / "test_kelp"),
          "--out", str(scores))  # fmt: skip
    test = json.loads(scores.read_text())
    decision = json.loads((run / "stacking" / "decision.json").read_text())
    nested = nested_threshold_dice(run, data)
    commit = subprocess.run(
        ["git", "-C", os.environ.get("PYTHONPATH", "."), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    result = {
        "label": args.label or commit,
        "commit": commit,
        "data": str(data),
        "tiles": args.tiles,
        "size": args.size,
        "k": args.k,
        "epochs": args.epochs,
        "models": args.models,
        "oof_in_sample": decision.get("in_sample", decision).get("dice"),
        "oof_nested_threshold": nested["dice"],
        "nested_thresholds": nested["thresholds"],
        "oof_nested": decision.get("nested", {}).get("dice"),
        "test": test.get("dice", test.get("global", {}).get("dice")),
        "run_seconds": json.loads((run / "run.json").read_text()).get("seconds"),
    }
    (out / "quality.json").write_text(json.dumps(result, indent=2))
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    """One row per result: OOF figures, test Dice and the gaps."""

    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{x:.4f}"

    print("| version | OOF in-sample | OOF nested (threshold) | OOF nested (pipeline) | test "
          "| test - in-sample | test - nested |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in results:
        nested = r["oof_nested"] if r["oof_nested"] is not None else r["oof_nested_threshold"]
        print(
            f"| {r['label']} | {fmt(r['oof_in_sample'])} | {fmt(r['oof_nested_threshold'])} "
            f"| {fmt(r['oof_nested'])} | {fmt(r['test'])} "
            f"| {r['test'] - r['oof_in_sample']:+.4f} | {r['test'] - nested:+.4f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--data", type=Path, default=None, help="default OUT/data")
    parser.add_argument("--tiles", type=int, default=250, help="train + test tiles")
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", default="lightgbm,xgboost")
    parser.add_argument("--label", default=None)
    parser.add_argument("--table", type=Path, nargs="+", help="print these quality.json files")
    args = parser.parse_args()
    if args.table:
        print_table([json.loads(p.read_text()) for p in args.table])
        return
    print_table([run_once(args)])


if __name__ == "__main__":
    main()
