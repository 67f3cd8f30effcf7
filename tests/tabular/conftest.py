"""A tiny synthetic run shared by the tabular tests: data, folds, features, trained trees.

Built once per session (about 10 s on 2 cores): 30 synthetic 64 px tiles in 3 folds, a
20-channel feature table, and every model trained with a handful of rounds.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kelp.data.catalog import Catalog, open_catalog
from kelp.data.folds import FoldAssignment, make_folds
from kelp.data.folds_file import read_folds, write_folds
from kelp.data.synth import synthesize
from kelp.features.build import build_features
from kelp.features.config import FeatureConfig, FilterConfig, SamplingConfig
from kelp.layout import RunLayout
from kelp.tabular.config import TabularConfig
from kelp.tabular.train import train_trees

SMALL_FEATURES = FeatureConfig(
    indices=("NDVI", "NDWI"),
    filters=FilterConfig(channels=("nir",), sigmas=(1.0,)),
    sampling=SamplingConfig(n_random=100),
)

# Few, small trees: the plumbing is under test, not the models (tiny tiles hold ~300 kelp
# rows, so the leaf minimums of the defaults would forbid any split).
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "lightgbm": {"num_leaves": 7, "min_data_in_leaf": 5},
    "xgboost": {"max_depth": 3},
    "catboost": {"depth": 3},
    "random_forest": {"num_parallel_tree": 8, "max_depth": 6, "min_child_weight": 1.0},
}
FAST = TabularConfig(
    max_rounds=12, early_stopping_rounds=5, n_jobs=2, device="cpu", params=FAST_PARAMS
)


@dataclass(frozen=True)
class Run:
    """A prepared run folder and what it was made from."""

    data: Path
    run: Path
    catalog: Catalog
    folds: FoldAssignment
    manifest: dict[str, Any]


def prepare(root: Path, tiles: int = 30, seed: int = 3) -> tuple[Path, Path]:
    """Synthesise data and write RUN/folds.csv and RUN/features; returns (data, run)."""
    data, run = root / "data", root / "run"
    synthesize(data, tiles, seed=seed, size=64, test_fraction=0.1)
    write_folds(make_folds(data, k=3, seed=0), run / "folds.csv")
    build_features(SMALL_FEATURES, RunLayout.of(run, data))
    return data, run


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Data, folds and features, untrained (do not train into this run)."""
    return prepare(tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Every model trained on every fold with :data:`FAST` (read-only for tests)."""
    data, run = prepare(tmp_path_factory.mktemp("trained"))
    manifest = train_trees(FAST, RunLayout.of(run, data))
    catalog = open_catalog(data)
    return Run(data, run, catalog, read_folds(run / "folds.csv", catalog), manifest)
