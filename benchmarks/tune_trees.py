"""Default against tuned trees on the hard preset, scored on places the study never saw.

    python benchmarks/tune_trees.py --seed 0 --out runs/tune-s0 --timeout 60

One seed: the hard-preset dataset of ``benchmarks/quality.py`` (``--tiles`` tiles of 350 px,
test tiles from held-out places), a run with one tree model (``--model``) and the default
``[tabular]`` settings, then ``kelp tune --target trees --timeout MIN`` on that run's folds
and table, then ``kelp run`` with the config it writes. It prints, for default and tuned:

- ``test``: global Dice on the held-out test tiles, through the fold ensemble at the
  threshold best on all out-of-fold tiles (as ``benchmarks/quality.py`` scores trees): the
  figure that counts, as the study never saw those places;
- ``oof_nested``: the nested out-of-fold Dice, which for the tuned model is optimistic (it
  was the objective: the best of many trials on the same folds);

and the study's trial counts. Every step resumes (the dataset, each run, the study: a
finished study is not extended; delete ``OUT/study.json`` to tune again).
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import _kelp, _read_json, _timed, _write_json, score_tree_run

CONFIG = """\
name = "default"
runs_dir = "{runs_dir}"

[data]
path = "{data}"

[folds]
k = {k}
seed = 0

[features]
workers = 2

[tabular]
models = ["{model}"]
n_jobs = 2

[tune]
seed = {seed}
"""


def _trees(config: Path) -> None:
    for stage in ("folds", "features", "trees"):
        _kelp("run", str(config), "--only", stage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default runs/tune-s<SEED>")
    parser.add_argument("--seed", type=int, default=0, help="generator and sampler seed")
    parser.add_argument("--tiles", type=int, default=260, help="train + test tiles")
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--model", default="lightgbm")
    parser.add_argument("--timeout", type=float, default=60.0, help="minutes of tuning")
    args = parser.parse_args()
    out = (args.out or Path(f"runs/tune-s{args.seed}")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "metadata.csv").is_file():
        _kelp("data", "synth", "--out", str(data), "--tiles", str(args.tiles), "--size",
              str(args.size), "--seed", str(args.seed), "--preset", "hard")  # fmt: skip
    config = out / "tune.toml"
    config.write_text(
        CONFIG.format(runs_dir=out, data=data, k=args.k, model=args.model, seed=args.seed)
    )
    _trees(config)
    default = _timed(out, "default", lambda: score_tree_run(out / "default", data))
    tuned_config = out / "tuned.toml"

    def study() -> dict[str, Any]:
        started = time.perf_counter()
        _kelp("tune", str(config), "--target", "trees", "--model", args.model,
              "--timeout", str(args.timeout), "--write-config", str(tuned_config))  # fmt: skip
        summary = _read_json(out / "default" / "tune" / f"trees-{args.model}" / "summary.json")
        return {"wall_seconds": round(time.perf_counter() - started, 1), **summary}

    summary = _timed(out, "study", study)
    _trees(tuned_config)
    tuned = _timed(out, "tuned", lambda: score_tree_run(out / "default-tuned", data))
    rows = {"default": default["rows"][args.model], "tuned": tuned["rows"][args.model]}
    result = {
        "seed": args.seed,
        "model": args.model,
        "timeout_min": args.timeout,
        "rows": rows,
        "trials": summary["counts"],
        "best_trial": {k: summary["best"][k] for k in ("number", "value", "params")},
        "tune_seconds": summary["wall_seconds"],
    }
    _write_json(out / "tune.json", result)
    print(f"hard preset, seed {args.seed}, {args.model}, {args.timeout:g} min of tuning")
    print(f"{'':<10}{'test':>8}{'oof nested':>12}")
    for name, row in rows.items():
        print(f"{name:<10}{row['test']:>8.4f}{row['oof_nested']:>12.4f}")
    gain = rows["tuned"]["test"] - rows["default"]["test"]
    print(f"tuned - default on the held-out test: {gain:+.4f}")
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n)
    best = summary["best"]
    print(f"study: {counts}; best trial {best['number']} (objective {best['value']:.4f})")
    print(f"best values: {json.dumps(best['params'])}")


if __name__ == "__main__":
    main()
