"""What `kelp` loads before it has work to do: `--version` and `--help` import no numerical
or machine-learning library (each command imports its stage in its body).

Each case runs in a fresh interpreter; a module-level heavy import anywhere on the CLI's
import path makes it fail.
"""

import pytest

from tests._imports import loaded_after

#: What `kelp --version`, `kelp --help` and `kelp <command> --help` must not load.
HEAVY = (
    "catboost",
    "dask",
    "distributed",
    "lightgbm",
    "matplotlib",
    "mlflow",
    "numpy",
    "pandas",
    "polars",
    "pyarrow",
    "rasterio",
    "scipy",
    "sklearn",
    "torch",
    "xgboost",
)


#: Nor pydantic before a command is chosen: no option default is a config object (typer
#: itself imports pydantic to build a command's parameters, so `kelp <command> --help` does)
HEAVY_BEFORE_A_COMMAND = (*HEAVY, "pydantic")


def _app(argv: list[str]) -> str:
    return f"import sys\nsys.argv = ['kelp', *{argv!r}]\nfrom kelp.cli import app\napp()"


def test_import_cli_loads_no_heavy_library() -> None:
    assert loaded_after("import kelp.cli", HEAVY_BEFORE_A_COMMAND) == []


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_load_no_heavy_library(argv: list[str]) -> None:
    assert loaded_after(_app(argv), HEAVY_BEFORE_A_COMMAND) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--help"],
        ["demo", "--help"],
        ["predict", "--help"],
        ["train-trees", "--help"],
        ["train-cnn", "--help"],
        ["data", "--help"],
        ["data", "synth", "--help"],
    ],
)
def test_command_help_loads_no_heavy_library(argv: list[str]) -> None:
    assert loaded_after(_app(argv), HEAVY) == []
