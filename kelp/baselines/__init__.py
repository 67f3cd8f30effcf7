"""Published per-pixel baselines, cross-validated on a run's folds and scored like kelp's
models.

- ``ndvi``: kelp where NDVI > t on clear water, t chosen by the threshold grid
  (:class:`~kelp.baselines.models.NdviRule`);
- ``first_place``: Team Epoch's LightGBM on 11 per-pixel features
  (:class:`~kelp.baselines.trees.FirstPlace`);
- ``second_place``: xultaeculcis's XGBoost on 22 per-pixel features and kelp + ring + 2 %
  rows (:class:`~kelp.baselines.trees.SecondPlace`).

:func:`~kelp.baselines.run.run_baselines` trains each on every fold's training folds,
reports the nested out-of-fold Dice and the fold ensemble's test Dice, and writes
``OUT/baselines.json``; ``python -m kelp.baselines DATA FOLDS_CSV OUT`` does the same from
the shell.
"""

from typing import TYPE_CHECKING, Any

from kelp.baselines.models import BASELINES, Baseline, NdviRule, create_baseline
from kelp.baselines.tiles import TileSet
from kelp.baselines.trees import DEFAULT_MAX_ROWS, FirstPlace, SecondPlace

if TYPE_CHECKING:
    from kelp.baselines.run import run_baselines

__all__ = [
    "BASELINES",
    "DEFAULT_MAX_ROWS",
    "Baseline",
    "FirstPlace",
    "NdviRule",
    "SecondPlace",
    "TileSet",
    "create_baseline",
    "run_baselines",
]


def __getattr__(name: str) -> Any:
    # run_baselines imports scikit-learn, whose OpenMP runtime reads OMP_WAIT_POLICY when it
    # loads (see kelp.baselines.__main__): importing it on first use lets the CLI set it first.
    if name == "run_baselines":
        from kelp.baselines.run import run_baselines

        return run_baselines
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
