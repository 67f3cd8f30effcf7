"""A tiny run with folds and features only, built once and copied for each test."""

import shutil
from pathlib import Path

import pytest

from kelp.pipeline.config import load_run_config
from kelp.pipeline.run import run_pipeline
from tests.pipeline.conftest import TINY

# no table rebuilds by default (a test turns n_random back on), a few rounds
TUNE = """
[tune]
startup_trials = 2
[tune.trees]
n_random = "off"
max_rounds = "off"
"""


def write_config(folder: Path, runs: Path, extra: str = "") -> Path:
    """The tiny pipeline config with ``[tune]`` settings (plus ``extra`` TOML)."""
    path = folder / "tiny.toml"
    path.write_text(TINY.format(runs=runs) + TUNE + extra)
    return path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/`` holding the tiny run after its folds and features stages."""
    root = tmp_path_factory.mktemp("tune")
    config = load_run_config(write_config(root, root / "runs"))
    for stage in ("folds", "features"):
        run_pipeline(config, only=stage)  # type: ignore[arg-type]
    return root / "runs"


@pytest.fixture
def tiny(prepared: Path, tmp_path: Path) -> Path:
    """A copy of the prepared run and its config path (file times kept: stages up to date)."""
    shutil.copytree(prepared, tmp_path / "runs")
    return tmp_path
