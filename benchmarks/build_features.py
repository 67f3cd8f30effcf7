"""Benchmark `kelp build-features`: tiles/s, the read-only floor, and peak memory.

    python benchmarks/build_features.py --tiles 100 --workers 2
    python benchmarks/build_features.py --tiles 1000 --workers 2

Synthesises ``--tiles`` train tiles of ``--size`` px (cached under ``--cache``), makes folds,
then times (1) only reading every tile (the floor) and (2) building the default feature table
with ``--workers`` processes. Peak RSS is reported for the main process and for the largest
worker (``ru_maxrss`` of the children).
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kelp._progress import set_quiet
from kelp.data.catalog import open_catalog
from kelp.data.folds import make_folds
from kelp.data.folds_file import write_folds
from kelp.data.tile import load_tile
from kelp.features.build import build_features
from kelp.features.config import FeatureConfig
from kelp.layout import RunLayout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100)
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    set_quiet(True)

    data = args.cache / f"synth-{args.tiles}-{args.size}"
    if not (data / "metadata.csv").is_file():
        # In a child process, so that this process's peak RSS measures the build alone.
        command = [sys.executable, "-m", "kelp", "-q", "data", "synth", "--out", str(data)]
        command += ["--tiles", str(args.tiles), "--size", str(args.size), "--test-fraction", "0"]
        subprocess.run(command, check=True)
    folds = args.cache / f"folds-{args.tiles}-{args.size}.csv"
    if not folds.is_file():
        write_folds(make_folds(data, k=5), folds)
    train = open_catalog(data).train

    start = time.perf_counter()
    for record in train:
        load_tile(record)
    read_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out:
        layout = RunLayout.of(out, data, folds=folds, features=out)
        start = time.perf_counter()
        manifest = build_features(FeatureConfig(workers=args.workers), layout)
        build_s = time.perf_counter() - start
    n = len(train)
    kib = 1024
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib  # largest child
    print(f"tiles: {n} train tiles of {args.size}x{args.size}, workers: {args.workers}")
    print(f"features: {len(manifest['feature_names'])} channels, {manifest['n_rows']} rows")
    print(f"read floor: {read_s:.2f} s = {n / read_s:.1f} tiles/s (one process)")
    print(
        f"build:      {build_s:.2f} s = {n / build_s:.1f} tiles/s ({build_s / read_s:.1f}x floor)"
    )
    print(f"peak RSS: main {self_rss:.0f} MiB, largest worker {child_rss:.0f} MiB")


if __name__ == "__main__":
    main()
