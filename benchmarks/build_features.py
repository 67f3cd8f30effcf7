"""Benchmark `kelp build-features` against its floors: tiles/s, per-tile budget, peak memory.

    python benchmarks/build_features.py --tiles 100
    python benchmarks/build_features.py --tiles 1000 --repeats 3
    python benchmarks/build_features.py --stats-memory 100,1000,2000,5635

Synthesises ``--tiles`` train tiles of ``--size`` px (cached under ``--cache``) and their
folds, then prints, in one run:

1. the per-tile budget in one process (CPU seconds, so other jobs on the box move it less):
   read, sampling, channels, filters, statistics, Parquet write and the rest, for the
   default 68-channel table and for ``configs/lean.toml``;
2. end to end, each in a fresh process with ``--workers`` workers (interpreter start-up,
   imports and worker start-up included), repeated ``--repeats`` times in turn, medians:
   the lean floor (``benchmarks/lean_floor.py``: the same lean table with nothing else),
   ``kelp build-features --config configs/lean.toml`` and the default table, each with its
   tiles/s, ratio to the floor and target, and the peak RSS of the main process and of the
   largest worker.

``--stats-memory N,...`` prints instead what the main process holds for the statistics
(:mod:`kelp.features.stats`, traced with ``tracemalloc``) after N tiles' summaries of 68
channels, and its peak while merging them into the manifest's normalisation: the part of
the main process's memory that grows with the tile count (bounded once each fold's
quantile sample is full, at about 1,000 tiles).

Targets on 2 cores at 1,000 tiles of 350 px: lean >= 0.7x the floor and >= 50 tiles/s,
default >= 25 tiles/s, peak RSS <= 0.5 GiB for the main process and per worker.
"""

import argparse
import cProfile
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kelp._progress import set_quiet
from kelp.bands import DEFAULT_BAND_ORDER
from kelp.config import load_toml
from kelp.data.catalog import open_catalog
from kelp.data.folds import make_folds
from kelp.data.folds_file import read_folds, write_folds
from kelp.features.config import FeatureConfig
from kelp.features.worker import Job, process
from kelp.tabular.models.base import available_cores

ROOT = Path(__file__).resolve().parent.parent
LEAN = ROOT / "configs" / "lean.toml"
# Runs `kelp ARGS...` and writes its own peak RSS (VmHWM: ru_maxrss would carry over the
# high-water mark of the process it was forked from) and its largest child's to a JSON file.
_RUN_KELP = """
import json, resource, sys
from kelp.cli import app
try:
    app(sys.argv[2:], prog_name="kelp")
except SystemExit as stop:
    code = stop.code or 0
else:
    code = 0
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak = {"main": int(status["VmHWM"].split()[0]) / 1024,
        "worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
open(sys.argv[1], "w").write(json.dumps(peak))
sys.exit(code)
"""
# Budget rows: (label, the functions whose cumulative time it is, functions to subtract).
_PARTS = (
    ("read", ("load_tile",), ()),
    ("sampling", ("sample_pixels",), ()),
    ("channels", ("build_channels",), ("filter_bank",)),
    ("filters", ("filter_bank",), ()),
    ("statistics", ("summarise", "stats_pixels"), ()),
    ("parquet write", ("write_table",), ()),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100)
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile-tiles", type=int, default=50)
    parser.add_argument("--cache", type=Path, default=Path("runs/bench"))
    parser.add_argument("--stats-memory", default=None, help="tile counts, e.g. 100,1000")
    args = parser.parse_args()
    if args.stats_memory:
        _stats_memory([int(n) for n in args.stats_memory.split(",")])
        return
    set_quiet(True)
    data, folds = _dataset(args.cache, args.tiles, args.size)
    cores = available_cores()
    print(f"{args.tiles} train tiles of {args.size} px, {args.workers} workers, {cores} cores"
          + (f" (fewer than the {args.workers} workers: figures are lower)"
             if cores < args.workers else ""))  # fmt: skip

    lean = FeatureConfig(**load_toml(LEAN)["features"])
    print(f"\nper-tile budget, one process, CPU ms per tile ({args.profile_tiles} tiles)")
    budgets = {
        "default": _budget(data, folds, FeatureConfig(), args.profile_tiles),
        "lean": _budget(data, folds, lean, args.profile_tiles),
    }
    print(f"{'part':<14}" + "".join(f"{name:>10}" for name in budgets))
    for label in [p[0] for p in _PARTS] + ["other", "total"]:
        print(f"{label:<14}" + "".join(f"{b[label]:>10.1f}" for b in budgets.values()))

    runs: dict[str, list[float]] = {"floor": [], "lean": [], "default": []}
    rss: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            floor = [sys.executable, str(ROOT / "benchmarks" / "lean_floor.py"), str(data)]
            floor += [str(out / "floor"), "--workers", str(args.workers)]
            runs["floor"].append(_timed(floor))
            for name, extra in (("lean", ["--config", str(LEAN)]), ("default", [])):
                seconds, peak = _kelp(data, folds, out / name, args.workers, extra)
                runs[name].append(seconds)
                rss[name] = peak
    floor_s = statistics.median(runs["floor"])
    print(f"\nend to end, fresh processes, median of {args.repeats} (start-up included)")
    print(f"{'build':<10}{'s':>8}{'tiles/s':>9}{'x floor':>9}{'target':>22}"
          f"{'main MiB':>10}{'worker MiB':>12}")  # fmt: skip
    targets = {"floor": "", "lean": ">= 0.7x, >= 50 tiles/s", "default": ">= 25 tiles/s"}
    for name, times in runs.items():
        s = statistics.median(times)
        measured = rss.get(name)
        main_mib = f"{measured['main']:.0f}" if measured else "-"
        worker_mib = f"{measured['worker']:.0f}" if measured else "-"
        print(f"{name:<10}{s:>8.2f}{args.tiles / s:>9.1f}{floor_s / s:>9.2f}{targets[name]:>22}"
              f"{main_mib:>10}{worker_mib:>12}")  # fmt: skip
    rate = {name: args.tiles / statistics.median(times) for name, times in runs.items()}
    main = {name: f"{rss[name]['main']:.0f}" for name in ("default", "lean")}
    worker = {name: f"{rss[name]['worker']:.0f}" for name in ("default", "lean")}
    cpu = {name: f"{budgets[name]['total']:.0f}" for name in ("default", "lean")}
    command = f"python benchmarks/build_features.py --tiles {args.tiles} --repeats {args.repeats}"
    print("\nREADME row:")
    print(
        f"| feature build, {args.tiles:,} tiles of {args.size} px, {args.workers} workers "
        f"| `{command}` | default (68 channels) {rate['default']:.1f} tiles/s (target >= 25); "
        f"lean (`configs/lean.toml`, 23) {rate['lean']:.1f} tiles/s = "
        f"{rate['lean'] / rate['floor']:.2f}x its floor's {rate['floor']:.1f} (targets >= 50, "
        f">= 0.7x); per tile {cpu['default']} / {cpu['lean']} CPU ms; peak RSS main "
        f"{main['default']} / {main['lean']} MiB, largest worker {worker['default']} / "
        f"{worker['lean']} MiB |"
    )


def _stats_memory(counts: list[int], channels: int = 68, folds: int = 5) -> None:
    """MiB the statistics hold after ``n`` tiles, and at their peak in the final merge."""
    import tracemalloc

    import numpy as np

    from kelp.features.sampling import KINDS
    from kelp.features.stats import Collector, TileSummary, normalisation

    names = [f"c{i}" for i in range(channels)]
    rng = np.random.default_rng(0)
    print(f"statistics in the main process, {channels} channels, {folds} folds (tracemalloc MiB)")
    print(f"{'tiles':>7}{'held':>8}{'peak building':>15}{'peak merging':>14}")
    for n in counts:
        tracemalloc.start()
        collected = Collector(folds, channels)
        for t in range(n):
            sums = [np.ones(channels) for _ in range(3)]  # count, total, m2: one array each
            values = rng.normal(size=(256, channels)).astype(np.float32)
            rows = {k: 1 for k in KINDS}
            summary = TileSummary(f"T{t:07d}", t % folds, rows, *sums, rng.random(256), values)
            collected.keep(summary)
        held, building = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        normalisation(
            sorted(collected.summaries, key=lambda s: s.tile_id), collected.samples, names
        )
        merging = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        mib = 1 << 20
        print(f"{n:>7}{held / mib:>8.1f}{building / mib:>15.1f}{merging / mib:>14.1f}")


def _dataset(cache: Path, tiles: int, size: int) -> tuple[Path, Path]:
    data = cache / f"synth-{tiles}-{size}"
    if not (data / "metadata.csv").is_file():
        command = [sys.executable, "-m", "kelp", "-q", "data", "synth", "--out", str(data)]
        command += ["--tiles", str(tiles), "--size", str(size), "--test-fraction", "0"]
        subprocess.run(command, check=True)
    folds = cache / f"folds-{tiles}-{size}.csv"
    if not folds.is_file():
        write_folds(make_folds(data, k=5), folds)
    return data, folds


def _budget(data: Path, folds: Path, config: FeatureConfig, n: int) -> dict[str, float]:
    """CPU ms per tile of each part of :func:`kelp.features.worker.process`."""
    assignment = read_folds(folds)
    fold_of = dict(zip(assignment.tile_ids, assignment.folds.tolist(), strict=True))
    profile = cProfile.Profile(time.process_time)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            Job(r, fold_of[r.tile_id], config, 0, DEFAULT_BAND_ORDER, Path(tmp) / r.tile_id, "")
            for r in open_catalog(data).train[:n]
        ]
        start = time.process_time()
        profile.enable()
        for job in jobs:
            process(job)
        profile.disable()
        total = time.process_time() - start
    cumulative: dict[str, float] = {}  # the outermost call of each name (nested: counted once)
    for (_, _, function), row in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        cumulative[function] = max(cumulative.get(function, 0.0), row[3])
    out = {}
    for label, functions, minus in _PARTS:
        seconds = sum(cumulative.get(f, 0.0) for f in functions)
        out[label] = 1000 * (seconds - sum(cumulative.get(f, 0.0) for f in minus)) / len(jobs)
    out["other"] = 1000 * total / len(jobs) - sum(out.values())
    out["total"] = 1000 * total / len(jobs)
    return out


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _kelp(
    data: Path, folds: Path, out: Path, workers: int, extra: list[str]
) -> tuple[float, dict[str, float]]:
    peak_file = out.parent / f"{out.name}-rss.json"
    command = [sys.executable, "-c", _RUN_KELP, str(peak_file), "-q", "build-features",
               str(data), "--folds", str(folds), "--out", str(out), "--workers", str(workers),
               *extra]  # fmt: skip
    seconds = _timed(command)
    return seconds, json.loads(peak_file.read_text())


if __name__ == "__main__":
    main()
