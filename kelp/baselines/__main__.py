"""``python -m kelp.baselines DATA FOLDS_CSV OUT``: score the baselines, print a table.

The table goes to stdout; progress and errors go to stderr (a
:class:`~kelp.errors.KelpError` as one red line, exit status 1).

``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here: on a machine shared with other jobs,
LightGBM's and XGBoost's OpenMP threads otherwise spin at every barrier while a core is
taken, which made a LightGBM round ~25x slower in our measurements (2 threads, 2 busy cores).
Each OpenMP runtime reads it once, when it loads (scikit-learn's, which XGBoost shares, with
:mod:`kelp.baselines.run`), so it is set before that module is imported.
"""

import argparse
import os
from collections.abc import Sequence
from typing import Any

from rich.markup import escape

from kelp._progress import console
from kelp.baselines.models import BASELINES
from kelp.baselines.trees import DEFAULT_MAX_ROWS
from kelp.errors import KelpError

__all__ = ["format_table", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kelp.baselines",
        description="Cross-validate the published per-pixel baselines on a run's folds.",
    )
    parser.add_argument("data", help="dataset folder")
    parser.add_argument("folds_csv", help="the run's folds.csv")
    parser.add_argument("out", help="output folder (a rerun resumes from it)")
    parser.add_argument(
        "--names",
        default=",".join(BASELINES),
        help=f"comma-separated baselines (default: {','.join(BASELINES)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        help=f"training rows of first_place (default: {DEFAULT_MAX_ROWS})",
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="tree threads (default: 2)")
    return parser


def format_table(result: dict[str, Any]) -> str:
    """The summary of :func:`~kelp.baselines.run.run_baselines` as a text table."""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = f"{'baseline':<14}{'oof nested':>11}{'in-sample':>11}{'thr':>6}{'test':>8}{'s':>8}"
    lines = [header]
    for name, entry in result["baselines"].items():
        lines.append(
            f"{name:<14}{cell(entry['oof_nested']):>11}{cell(entry['oof_in_sample']):>11}"
            f"{entry['threshold']:>6.2f}{cell(entry['test']):>8}{entry['seconds']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from kelp.baselines.run import run_baselines

    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    try:
        result = run_baselines(
            args.data,
            args.folds_csv,
            args.out,
            names,
            seed=args.seed,
            max_rows=args.max_rows,
            n_jobs=args.n_jobs,
        )
    except (KelpError, OSError, ImportError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 1
    print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
