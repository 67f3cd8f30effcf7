"""Benchmark `kelp predict`: test tiles per second with a finished run's models.

    python benchmarks/predict.py --run runs/demo            # after `kelp demo`

Predicts the run's own test tiles into a temporary folder (every tile from scratch: channel
stack, each tree model's fold average, the CNN's fold average, meta-model, post-processing,
GeoTIFF) and prints tiles/s and the time per tile.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from kelp._progress import set_quiet
from kelp.layout import RunLayout
from kelp.stacking.config import PredictConfig
from kelp.stacking.predict import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    set_quiet(True)
    record = json.loads((args.run / "run.json").read_text())
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        config = PredictConfig(data=record["data"], out=Path(out), device=args.device)
        manifest = predict(config, RunLayout.of(args.run))
        seconds = time.perf_counter() - start
    n = manifest["n_tiles"]
    models = ", ".join(manifest["models"])
    print(f"run: {args.run} ({models}; meta {manifest['meta']})")
    print(f"predict: {n} tiles in {seconds:.2f} s = {n / seconds:.2f} tiles/s "
          f"({1000 * seconds / n:.0f} ms per tile, {args.device})")  # fmt: skip


if __name__ == "__main__":
    main()
