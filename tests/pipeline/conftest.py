"""One tiny end-to-end run, built once per session and shared read-only by the tests."""

from pathlib import Path

import pytest

from kelp.pipeline.config import load_run_config
from kelp.pipeline.run import run_pipeline

TINY = """
name = "tiny"
runs_dir = "{runs}"

[data.synth]
tiles = 30
size = 64
seed = 3
test_fraction = 0.15

[folds]
k = 3

[features]
indices = ["NDVI", "NDWI"]
[features.filters]
channels = ["nir"]
sigmas = [1.0]
[features.sampling]
n_random = 100

[tabular]
models = ["lightgbm", "xgboost"]
device = "cpu"
max_rounds = 15
early_stopping_rounds = 5
n_jobs = 2
[tabular.params.lightgbm]
num_leaves = 7
min_data_in_leaf = 5
[tabular.params.xgboost]
max_depth = 3

[cnn]
channels = ["swir", "nir", "red", "NDVI", "dem_water"]
encoder = "resnet18"
encoder_depth = 3
decoder_channels = [16, 8, 8]
epochs = 2
batch_size = 4
patience = 0
tta = false
device = "cpu"
num_workers = 0

[stacking]
compare = ["logistic", "average"]
grid_tiles = 3
[stacking.postprocess]
coarse_step = 0.1
fine_step = 0.05
min_areas = [0, 3]
"""


def write_config(folder: Path, runs: Path, extra: str = "") -> Path:
    """Write the tiny config (plus ``extra`` TOML) and return its path."""
    path = folder / "tiny.toml"
    path.write_text(TINY.format(runs=runs) + extra)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """``(config path, run.json)`` of a finished tiny run (do not modify it)."""
    root = tmp_path_factory.mktemp("pipeline")
    config = write_config(root, root / "runs")
    record = run_pipeline(load_run_config(config), config.read_text())
    return config, record
