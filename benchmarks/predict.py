"""Benchmark `kelp predict` against its parts, each measured alone on the same tiles.

    python benchmarks/predict.py --build runs/bench-predict     # builds the run once, then times
    python benchmarks/predict.py --run runs/demo --tiles 20     # any finished run (`kelp demo`)
    python benchmarks/predict.py --build runs/bench-predict --set overlap=false --set num_workers=0

``--build FOLDER`` first runs ``kelp run`` (it skips what is done; about 4 minutes the first
time on 2 cores) on a config written to ``FOLDER/predict.toml``: 80 synthetic tiles of
350 px of the hard preset (60 train, 20 test), 5 area-grouped folds, the 4 tree models with
the default ``[tabular]`` settings (at most 1000 rounds, early stopping after 50: the
rounds kept are in each ``model.json``) and a resnet18 U-Net with the default decoder,
trained for one epoch of 2 steps (its speed does not depend on how well it is trained).
``--run RUN`` takes a finished run instead.

In one run, for the first ``--tiles`` test tiles of the run's dataset (20 by default), it
prints:

- (e) ``predict()`` end to end on a folder holding just those tiles, model loading included,
  in a fresh process (``--end-to-end``) so that its peak RSS (``getrusage``: the process,
  and its largest child) is its own;
- the parts, in this process, on stacks computed once, each with its libraries on every
  core: (a) reading a tile and its channel stack, the ``(H*W, C)`` rows the trees read,
  (b) each tree family's fold ensemble (``fold_logits``), (c) the CNN fold ensemble at the
  batch size ``kelp predict`` uses (and at 8 for comparison, not summed);
- (d) the speed the parts imply, ``1 / (sum of their seconds per tile)``, and the ratio
  (e) / (d) beside its target, 0.8;
- the cores the process got, before and after (two busy processes against one): on a box
  shared with other work it is less than the core count and moves while it runs, and every
  figure with it.

``--set KEY=VALUE`` sets a ``[predict]`` key for (e) (``batch_size`` for (c) too). The
targets are for 2 cores; the core count is printed, and fewer cores are said, not refused.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kelp._progress import set_quiet
from kelp.artifacts import read_json
from kelp.cnn.ensemble import predict_tiles
from kelp.data.catalog import TileRecord, scan_catalog
from kelp.data.tile import load_tile
from kelp.features.stack import build_channels
from kelp.layout import RunLayout
from kelp.stacking.config import PredictConfig
from kelp.stacking.predict import BaseEnsemble, predict
from kelp.tabular.models.base import available_cores
from kelp.tabular.predict import fold_logits, pixel_rows

TARGET = 0.8
CONFIG = """\
name = "predict"
runs_dir = "{runs}"

[data.synth]
tiles = 80
size = 350
seed = 0
test_fraction = 0.25
preset = "hard"

[folds]
k = 5

[features]
workers = 2

[tabular]
models = ["lightgbm", "xgboost", "catboost", "random_forest"]

[cnn]
encoder = "resnet18"
epochs = 1
warmup_epochs = 0.5
steps_per_epoch = 2
crop_size = 128
batch_size = 8
patience = 0
tta = false

[predict]
enabled = false  # this script predicts
"""


def _build(folder: Path) -> Path:
    """``kelp run`` on the benchmark's config (a no-op once done); the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "predict.toml"
    config.write_text(CONFIG.format(runs=(folder / "runs").resolve()))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kelp", "-q", "run", str(config)], check=True)
    print(f"kelp run {config}: {time.perf_counter() - started:.0f} s (0 when already done)")
    return folder / "runs" / "predict"


def _test_folder(run: Path, n: int, folder: Path) -> list[TileRecord]:
    """Copy the first ``n`` test tiles of the run's dataset into ``folder``; their records."""
    data = Path(read_json(run / "run.json", "finish the run with `kelp run`")["data"])
    catalog, _ = scan_catalog(data)
    for record in sorted(catalog.test, key=lambda r: r.tile_id)[:n]:
        shutil.copy(record.image, folder / record.image.name)
    records, _ = scan_catalog(folder)
    return list(records.test)


def _options(pairs: list[str]) -> dict[str, Any]:
    """``["batch_size=1", ...]`` -> ``{"batch_size": 1, ...}`` (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _capacity() -> float:
    """Cores this process gets now: 2 x one busy process's time / two at once's (a box
    shared with other work gives less than its core count, and changes while it runs)."""
    busy = [sys.executable, "-c", "x = 0\nfor i in range(4_000_000): x += i"]

    def wall(n: int) -> float:
        started = time.perf_counter()
        for process in [subprocess.Popen(busy) for _ in range(n)]:
            process.wait()
        return time.perf_counter() - started

    return 2 * wall(1) / wall(2)


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def end_to_end(run: Path, data: Path, device: str, options: dict[str, Any]) -> dict[str, Any]:
    """(e): ``predict()`` of every tile in ``data``; seconds, tiles and peak RSS."""
    with tempfile.TemporaryDirectory() as out:
        config = PredictConfig(data=data, out=Path(out), device=device, **options)  # type: ignore[arg-type]
        started = time.perf_counter()
        manifest = predict(config, RunLayout.of(run))
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "n_tiles": manifest["n_tiles"],
        "models": manifest["models"],
        "config": config.model_dump(mode="json", include=set(options) | {"device"}),
        "peak_mib": _peak_mib(resource.RUSAGE_SELF),
        "peak_workers_mib": _peak_mib(resource.RUSAGE_CHILDREN),
    }


def _parts(
    run: Path, records: list[TileRecord], device: str, batch_size: int | None
) -> tuple[dict[str, float], float, tuple[int, ...]]:
    """Seconds per tile of each part alone, the seconds of loading the models, a tile's
    ``(C, H, W)`` stack shape."""
    stacking = read_json(run / "stacking" / "manifest.json", "run `kelp stack`")
    started = time.perf_counter()
    ensemble = BaseEnsemble(run, stacking, device=device)  # type: ignore[arg-type]
    loading = time.perf_counter() - started
    n = len(records)
    seconds: dict[str, float] = {}
    stacks = []
    started = time.perf_counter()
    for record in records:
        tile = load_tile(record, ensemble.band_order)
        stacks.append(build_channels(tile, ensemble.config)[0])
    seconds["(a) read + channel stack"] = (time.perf_counter() - started) / n
    started = time.perf_counter()
    rows = [pixel_rows(stack) for stack in stacks]
    seconds["(a) pixel rows (H*W, C)"] = (time.perf_counter() - started) / n
    for name, models in ensemble.trees.items():
        started = time.perf_counter()
        for r in rows:
            fold_logits(models, r)
        seconds[f"(b) {name} x {len(models)} folds"] = (time.perf_counter() - started) / n
    del rows
    shape = stacks[0].shape
    if ensemble.cnn is not None:
        cnn = ensemble.cnn
        if batch_size is None:  # `[predict] batch_size = "auto"`: batches on a GPU only
            batch_size = 8 if cnn.device.type == "cuda" else 1
        raws = {
            r.tile_id: np.ascontiguousarray(s[ensemble.cnn_index])
            for r, s in zip(records, stacks, strict=True)
        }
        del stacks
        for batch in sorted({batch_size, 8}, key=lambda b: b != batch_size):
            started = time.perf_counter()
            for _ in predict_tiles(
                cnn.members, records, lambda r: (raws[r.tile_id], None), cnn.device, batch,
                cnn.tta, cnn.precision,
            ):  # fmt: skip
                pass
            label = f"(c) cnn x {len(cnn.folds)} folds, batch {batch}"
            if batch != batch_size:  # what batching would give: shown, not summed
                label = f"    for comparison: cnn, batch {batch} (not in (d))"
            seconds[label] = (time.perf_counter() - started) / n
    return seconds, loading, shape


def main() -> None:
    """Build or take the run, time (e) in a child process and the parts here, print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="a finished run folder")
    where.add_argument("--build", type=Path, help="build the benchmark's run here first")
    parser.add_argument("--tiles", type=int, default=20, help="test tiles to predict")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--end-to-end", type=Path, help=argparse.SUPPRESS)  # the child: (e)
    args = parser.parse_args()
    set_quiet(True)
    options = _options(args.set)
    run = args.run if args.run is not None else _build(args.build)
    if args.end_to_end is not None:
        print(json.dumps(end_to_end(run, args.end_to_end, args.device, options)))
        return
    cores = available_cores()
    print(f"cores: {cores} usable of {os.cpu_count()}" + (
        "; the targets are for 2 cores: fewer give lower figures" if cores < 2 else ""
    ))  # fmt: skip
    capacity = _capacity()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        records = _test_folder(run, args.tiles, folder)
        child = subprocess.run(
            [sys.executable, __file__, "--run", str(run), "--device", args.device,
             "--end-to-end", str(folder), *(f"--set={s}" for s in args.set)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        whole = json.loads(child.stdout.splitlines()[-1])
        batch_size = options.get("batch_size")
        batch_size = None if batch_size in (None, "auto") else int(batch_size)
        parts, loading, shape = _parts(run, records, args.device, batch_size)
    n = whole["n_tiles"]
    print(f"run: {run} ({', '.join(whole['models'])}); {n} test tiles, stack {shape}")
    print(f"predict config: {whole['config']}")
    print(f"{'part (alone, on precomputed stacks)':44s} {'s/tile':>8s} {'tiles/s':>8s}")
    for label, s in parts.items():
        print(f"  {label:42s} {s:8.3f} {1 / s:8.2f}")
    implied = 1 / sum(s for label, s in parts.items() if label.startswith("("))
    e = n / whole["seconds"]
    print(f"(d) implied by the parts {'':19s} {1 / implied:8.3f} {implied:8.2f}")
    print(
        f"(e) predict() end to end {'':19s} {whole['seconds'] / n:8.3f} {e:8.2f}   "
        f"({whole['seconds']:.1f} s; model loading alone {loading:.1f} s)"
    )
    verdict = "met" if e / implied >= TARGET else "NOT met"
    unloaded = n / max(whole["seconds"] - loading, 1e-9)  # loading is paid once, not per tile
    print(
        f"(e)/(d) = {e / implied:.2f}   target >= {TARGET} ({verdict}); without the model "
        f"loading {unloaded / implied:.2f}"
    )
    print(
        f"peak RSS of predict: {whole['peak_mib']:.0f} MiB; its largest child process "
        f"{whole['peak_workers_mib']:.0f} MiB (loader workers, or a helper a library "
        f"starts: a forked child counts the pages it shares with predict); this process "
        f"(the parts) {_peak_mib(resource.RUSAGE_SELF):.0f} MiB"
    )
    print(f"cores this process got (2 busy processes vs 1): {capacity:.2f} before, "
          f"{_capacity():.2f} after")  # fmt: skip


if __name__ == "__main__":
    main()
