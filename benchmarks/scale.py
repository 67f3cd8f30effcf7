"""Peak memory of `kelp train-trees`, `kelp stack` and `kelp predict` against the tile count.

    python benchmarks/scale.py --tiles 100,300,1000 --out runs/scale
    python benchmarks/scale.py --tiles 100,300,1000 --out runs/scale --before ../kelp-0.1

For each tile count: a synthetic dataset of 350 px tiles (default preset, no test tiles),
5 area-grouped folds and the default feature table (``kelp run --only folds``/``features``,
kept in ``OUT/<tiles>/``), then ``kelp train-trees --folds 0 --models lightgbm`` (fold 0
only: the peak is the fit of one fold; the other folds are alike) in a fresh process, each
variant in its own run folder on the same folds and table:

- ``before``: the code of ``--before DIR`` (a checkout of an earlier kelp, put first on
  ``PYTHONPATH``), which loads the whole table, then copies the fold's rows;
- ``per fold``: this code, reading only the fold's tiles, every row;
- ``capped``: this code with ``[tabular] max_rows = --max-rows``.

``--stages`` (default ``trees,stack,predict``) then, for ``stack`` and ``predict``, trains
LightGBM on all 5 folds in the same run folder (``kelp run --only trees``, capped), and
measures ``kelp stack`` uncapped (``all rows``) and with ``[stacking] max_rows =
--stack-max-rows`` (``capped``), then ``kelp predict`` (on the capped stacker) over the same
tiles' images, linked into a folder of their own as test tiles.

It prints peak RSS (``/usr/bin/time``'s maximum resident set size) per variant and tile
count, the table's rows, the ratio RSS(largest) / RSS(second largest) beside its goal 1.15
(for the capped variant, once the cap binds), and a straight-line projection through the
two largest counts to ``--project`` tiles (5,635: the real train set) beside its goal,
8 GB. Boosting is cut to ``--rounds`` rounds: memory does not depend on it.

``--engines N`` then times ``kelp build-features`` on the smallest tile count, end to end in
a fresh process each (start-up included, a new output folder each time), N alternating
pairs: the process pool (``--workers 2``) against Dask (``--cluster local:2``, a
LocalCluster of 2 single-threaded worker processes started by the command), and prints
tiles/s of each, the median ratio of their times (goal: Dask <= 1.3x the pool) and whether
the two tables are byte-identical.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """\
name = "run"
runs_dir = "{runs}"

[data]
path = "{data}"

[folds]
k = 5

[features]
workers = 2

[tabular]
models = ["lightgbm"]
max_rounds = {rounds}
early_stopping_rounds = 0
n_jobs = 2
max_rows = {cap}
"""

STACKING = """\
[stacking]
{cap}
"""

TABULAR = """\
[tabular]
max_rounds = {rounds}
early_stopping_rounds = 0
n_jobs = 2
{cap}
"""


def _kelp(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "kelp", "-q", *args], check=True, env=env)


def _prepare(out: Path, tiles: int, rounds: int = 20, cap: int = 500_000) -> Path:
    """Data, folds and the feature table for ``tiles`` tiles; the run folder."""
    folder = out / str(tiles)
    data = folder / "data"
    if not (data / "metadata.csv").is_file():
        _kelp("data", "synth", "--out", str(data), "--tiles", str(tiles), "--size", "350",
              "--seed", "0", "--test-fraction", "0")  # fmt: skip
    config = folder / "prepare.toml"
    config.write_text(CONFIG.format(runs=folder, data=data, rounds=rounds, cap=cap))
    for stage in ("folds", "features"):
        _kelp("run", str(config), "--only", stage)
    return folder / "run"


def _peak_mib(run: Path, variant: str, rounds: int, cap: int | None, before: Path | None) -> float:
    """Peak RSS of one `kelp train-trees` in a fresh process, in its own run folder."""
    folder = run.parent / variant
    shutil.rmtree(folder, ignore_errors=True)  # trained models would be reused, not refit
    folder.mkdir()
    config = folder / "tabular.toml"
    config.write_text(TABULAR.format(rounds=rounds, cap=f"max_rows = {cap}" if cap else ""))
    command = [
        "train-trees", str(run.parent / "data"), "--run", str(folder),
        "--folds-file", str(run / "folds.csv"), "--features", str(run / "features"),
        "--folds", "0", "--models", "lightgbm", "--config", str(config),
    ]  # fmt: skip
    return _peak(command, before)


def _peak(command: list[str], before: Path | None = None) -> float:
    """Peak RSS in MiB of ``kelp COMMAND`` in a fresh process (``before``: that checkout's)."""
    env = dict(os.environ)
    if before is not None:
        env["PYTHONPATH"] = str(before.resolve())
    timed = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "kelp", "-q", *command]
    done = subprocess.run(timed, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"kelp {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def _stage_peaks(run: Path, stack_cap: int) -> dict[str, float]:
    """Peak RSS of `kelp stack` (all rows, capped) and `kelp predict` on one run folder."""
    folder = run.parent
    _kelp("run", str(folder / "prepare.toml"), "--only", "trees")  # all folds, OOF maps
    data = folder / "data"
    peaks = {}
    for variant, cap in (("all rows", None), ("capped", stack_cap)):
        config = folder / f"stack-{variant.replace(' ', '_')}.toml"
        config.write_text(STACKING.format(cap=f"max_rows = {cap}" if cap else ""))
        peaks[f"stack {variant}"] = _peak(
            ["stack", str(data), "--run", str(run), "--config", str(config), "--force"]
        )
    tiles = folder / "predict-tiles" / "test_satellite"  # the train images, as test tiles
    if not tiles.is_dir():
        tiles.mkdir(parents=True)
        for image in sorted((data / "train_satellite").glob("*_satellite.tif")):
            (tiles / image.name).symlink_to(image.resolve())
    shutil.rmtree(folder / "predictions", ignore_errors=True)
    predictions = str(folder / "predictions")
    peaks["predict"] = _peak(
        ["predict", "--data", str(tiles.parent), "--run", str(run), "--out", predictions]
    )
    return peaks


def _build_seconds(run: Path, out: Path, engine: list[str]) -> float:
    """Wall time of one `kelp build-features` into a new folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    _kelp("build-features", str(run.parent / "data"), "--folds", str(run / "folds.csv"),
          "--out", str(out), *engine)  # fmt: skip
    return time.perf_counter() - started


def _same_table(a: Path, b: Path) -> bool:
    files = sorted(p.name for p in (a / "table").iterdir())
    if files != sorted(p.name for p in (b / "table").iterdir()):
        return False
    return all((a / "table" / f).read_bytes() == (b / "table" / f).read_bytes() for f in files)


def _engines(run: Path, tiles: int, pairs: int) -> None:
    """Process pool against a LocalCluster of as many workers, alternating."""
    engines = {"pool": ["--workers", "2"], "dask": ["--cluster", "local:2"]}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for pair in range(pairs):
        order = list(engines) if pair % 2 == 0 else list(engines)[::-1]
        for name in order:
            seconds[name].append(_build_seconds(run, run.parent / f"engine-{name}", engines[name]))
        print(f"pair {pair + 1}: " + ", ".join(f"{n} {s[-1]:.1f} s" for n, s in seconds.items()),
              flush=True)  # fmt: skip
    ratios = [d / p for d, p in zip(seconds["dask"], seconds["pool"], strict=True)]
    print(f"\n`kelp build-features`, {tiles} tiles of 350 px, 2 workers, end to end "
          f"({pairs} alternating pairs, medians; {os.cpu_count()} cores)")  # fmt: skip
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<5} {median:6.1f} s  {tiles / median:6.1f} tiles/s")
    same = _same_table(run.parent / "engine-pool", run.parent / "engine-dask")
    print(f"  dask / pool time: median ratio {statistics.median(ratios):.2f} (goal <= 1.3); "
          f"tables byte-identical: {same}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="100,300,1000")
    parser.add_argument("--out", type=Path, default=Path("runs/scale"))
    parser.add_argument("--max-rows", type=int, default=500_000)
    parser.add_argument("--stack-max-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--stages", default="trees,stack,predict")
    parser.add_argument("--before", type=Path, default=None, help="an earlier kelp checkout")
    parser.add_argument("--project", type=int, default=5635)
    parser.add_argument(
        "--engines",
        type=int,
        default=0,
        metavar="PAIRS",
        help="also time build-features: process pool vs Dask, PAIRS pairs",
    )
    parser.add_argument("--skip-rss", action="store_true", help="only the --engines timing")
    args = parser.parse_args()
    counts = [int(n) for n in args.tiles.split(",")]
    stages = set(args.stages.split(","))
    out = args.out.resolve()
    variants = {"per fold": None, "capped": args.max_rows} if "trees" in stages else {}
    results: dict[str, dict[int, float]] = {v: {} for v in (["before"] if args.before else [])}
    results.update({f"trees {v}": {} for v in variants})
    rows = {}
    if args.skip_rss:
        counts = counts[:1]
    for n in counts:
        run = _prepare(out, n, args.rounds, args.max_rows)
        if args.skip_rss:
            break
        rows[n] = json.loads((run / "features" / "manifest.json").read_text())["n_rows"]
        if args.before is not None:
            results["before"][n] = _peak_mib(run, "before", args.rounds, None, args.before)
        for name, cap in variants.items():
            peak = _peak_mib(run, name.replace(" ", "_"), args.rounds, cap, None)
            results[f"trees {name}"][n] = peak
        if stages & {"stack", "predict"}:
            for name, peak in _stage_peaks(run, args.stack_max_rows).items():
                results.setdefault(name, {})[n] = peak
        peaks = ", ".join(f"{v} {r[n]:.0f} MiB" for v, r in results.items())
        print(f"{n} tiles ({rows[n]:,} rows): {peaks}", flush=True)
    if args.engines:
        _engines(_prepare(out, counts[0]), counts[0], args.engines)
    if args.skip_rss:
        return
    print(f"\npeak RSS, MiB: `kelp train-trees --folds 0 --models lightgbm` (cap "
          f"{args.max_rows:,} rows), `kelp stack` (cap {args.stack_max_rows:,} rows), "
          f"`kelp predict` ({os.cpu_count()} cores)")  # fmt: skip
    width = max(14, *(len(v) + 2 for v in results))
    print(f"{'tiles':>7}{'rows':>12}" + "".join(f"{v:>{width}}" for v in results))
    for n in counts:
        print(f"{n:>7}{rows[n]:>12,}" + "".join(f"{r[n]:>{width}.0f}" for r in results.values()))
    if len(counts) >= 2:
        a, b = counts[-2], counts[-1]
        print(f"\nRSS({b}) / RSS({a}) (goal <= 1.15 once the cap binds) and a straight line "
              f"through them at {args.project:,} tiles (goal < 8 GB):")  # fmt: skip
        for v, r in results.items():
            slope = (r[b] - r[a]) / (b - a)
            projected = r[b] + max(0.0, slope) * (args.project - b)  # never below measured
            print(f"  {v:<18} ratio {r[b] / r[a]:.2f}   projected {projected / 1024:.2f} GiB")
    summary = {"rows": rows, "peak_mib": results, "max_rows": args.max_rows,
               "stack_max_rows": args.stack_max_rows}  # fmt: skip
    (out / "scale.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
