"""What a spawned feature worker imports: numpy, scipy, pyarrow, rasterio and the config
types it unpickles, nothing of the tree models, the CNN or the CLI."""

from tests._imports import loaded_after

#: What reading a tile and writing its Parquet rows never needs.
NOT_IN_WORKER = (
    "catboost",
    "dask",
    "distributed",
    "lightgbm",
    "matplotlib",
    "mlflow",
    "pandas",
    "polars",
    "sklearn",
    "torch",
    "typer",
    "xgboost",
)


def test_worker_loads_no_model_library() -> None:
    assert loaded_after("import kelp.features.worker", NOT_IN_WORKER) == []


def test_worker_loads_no_model_stage() -> None:
    stages = ("kelp.cli", "kelp.cnn", "kelp.pipeline", "kelp.stacking", "kelp.tabular")
    assert loaded_after("import kelp.features.worker", stages) == []
