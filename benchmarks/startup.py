"""Time start-up: `kelp --version`, `kelp --help`, `kelp run --help` and a feature worker.

    python benchmarks/startup.py                  # 7 rounds
    python benchmarks/startup.py --rounds 15      # on a busy machine: more rounds, same best

Each case runs in a fresh process (a warm-up round first, not counted; then the cases in
turn, round after round, so that drift of a shared machine's speed falls on all of them),
and the best and median wall seconds are printed beside the floor (``python -c pass``: the
interpreter's own start), the ratio best / floor and the target. "feature worker ready" is
``python -c 'import kelp.features.worker'``: what each process of a ``spawn`` pool of
`kelp build-features` imports before its first tile. `kelp` is the console script next to
this interpreter (``python -m kelp`` without one).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = "feature worker ready"


def _kelp() -> list[str]:
    script = Path(sys.executable).parent / "kelp"
    if script.is_file():
        return [str(script)]
    found = shutil.which("kelp")
    return [found] if found else [sys.executable, "-m", "kelp"]


def _cases() -> dict[str, tuple[list[str], float | None]]:
    """Name -> (command, target seconds); the floor has no target."""
    kelp = _kelp()
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "kelp --version": ([*kelp, "--version"], 0.5),
        "kelp --help": ([*kelp, "--help"], 0.5),
        "kelp run --help": ([*kelp, "run", "--help"], 0.5),
        WORKER: ([sys.executable, "-c", "import kelp.features.worker"], 1.0),
    }


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """Time every case, then print one row per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed runs of each case")
    args = parser.parse_args()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = f"{usable} usable core(s) of {os.cpu_count()}"
    if (usable or 1) < 2:
        cores += " (fewer than 2: the figures include waiting for the one core)"
    print(f"{cores}; kelp = {' '.join(_kelp())}; best and median of {args.rounds} runs")
    cases = _cases()
    for command, _ in cases.values():  # warm the page cache and .pyc files
        _wall(command)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (command, _) in cases.items():
            times[name].append(_wall(command))
    floor = min(times["python -c pass"])
    print(f"{'':<22}{'best s':>8}{'median s':>10}{'floor s':>9}{'x floor':>9}{'target s':>10}")
    over = []
    for name, (_, target) in cases.items():
        best, median = min(times[name]), statistics.median(times[name])
        verdict = ""
        if target is not None:
            verdict = "  ok" if best <= target else "  OVER"
            if best > target:
                over.append(name)
        print(
            f"{name:<22}{best:>8.3f}{median:>10.3f}{floor:>9.3f}{best / floor:>9.1f}"
            f"{'' if target is None else f'{target:.1f}':>10}{verdict}"
        )
    print("every target met" if not over else f"over target: {', '.join(over)}")


if __name__ == "__main__":
    main()
