"""Time the synthetic generator: tiles per second for N tiles (default size 350).

Usage: ``python benchmarks/synth.py --tiles 200 [--size 350] [--seed 0] [--preset hard]
[--out DIR]``.
Without ``--out`` the tiles go to a temporary directory that is removed afterwards.
"""

import argparse
import tempfile
from pathlib import Path

from kelp._progress import set_quiet
from kelp.data.synth import synthesize

TARGET = 20  # tiles/s at 350 px on 2 cores


def main() -> None:
    """Generate the tiles once and print the throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--size", type=int, default=350)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="default", choices=("default", "hard"))
    parser.add_argument("--out", type=Path, default=None, help="keep the dataset here")
    args = parser.parse_args()
    set_quiet(True)  # a progress bar would be timed too
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out if args.out is not None else Path(tmp) / "synth"
        summary = synthesize(out, args.tiles, seed=args.seed, size=args.size, preset=args.preset)
    print(
        f"{args.tiles} {args.preset} tiles of {args.size} px in {summary.seconds:.2f} s: "
        f"{args.tiles / summary.seconds:.1f} tiles/s = "
        f"{args.tiles / summary.seconds / TARGET:.2f}x the target of {TARGET} tiles/s "
        f"(kelp {summary.kelp_fraction:.2%} of train pixels, "
        f"{summary.tiles_without_kelp}/{summary.n_train} train tiles without kelp)"
    )


if __name__ == "__main__":
    main()
