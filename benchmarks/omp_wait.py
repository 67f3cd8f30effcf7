"""Benchmark OpenMP's wait policy: tree training and CNN training, PASSIVE against the default.

    python benchmarks/omp_wait.py                 # quiet machine, 3 pairs
    python benchmarks/omp_wait.py --busy 2        # while 2 processes spin on the cores

`kelp` leaves ``OMP_WAIT_POLICY`` to the user: ``PASSIVE`` was a candidate default (an idle
OpenMP thread then sleeps instead of spinning at each barrier, which frees a core on a
machine shared with other jobs), and the figures of this script are why it is not one.
This script shows what the policy costs or saves: it runs the same job
(``benchmarks/tabular.py`` for the trees, ``benchmarks/cnn.py`` for the U-Net, each in a
fresh process because a runtime reads the policy once, when it loads) with the policy unset
and with ``PASSIVE``, alternating pair by pair so that drift of a shared machine's speed
falls on both, and prints each pair's wall seconds and the median ratio PASSIVE / unset.
``--busy N`` starts N processes that spin on the CPU for the whole measurement: the case of
a box shared with other jobs, where a spinning OpenMP thread holds a core another needs.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
JOBS = {
    "trees": [
        "tabular.py", "--tiles", "60", "--folds", "0", "--models", "lightgbm,xgboost",
        "--predict-tiles", "2",
    ],
    "cnn": ["cnn.py"],
}  # fmt: skip


def _wall(job: list[str], policy: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(HERE / job[0]), *job[1:]],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    """Warm the caches, then time the pairs and print them with the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="spinning processes alongside")
    parser.add_argument("--jobs", default="trees,cnn")
    args = parser.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        print(f"{os.cpu_count()} cores, {args.busy} spinning processes alongside")
        print(f"{'job':<6}{'pair':>5}{'unset s':>10}{'PASSIVE s':>11}{'ratio':>8}")
        for name in args.jobs.split(","):
            job = JOBS[name]
            _wall(job, "PASSIVE")  # builds the cached data; not counted
            ratios = []
            for pair in range(args.pairs):
                unset, passive = _wall(job, None), _wall(job, "PASSIVE")
                ratios.append(passive / unset)
                print(f"{name:<6}{pair:>5}{unset:>10.1f}{passive:>11.1f}{ratios[-1]:>8.2f}")
            print(f"{name:<6} median ratio PASSIVE / unset: {statistics.median(ratios):.2f}")
    finally:
        for hog in hogs:
            hog.kill()


if __name__ == "__main__":
    main()
