"""The ``kelp train-trees`` command: a few lines around :func:`kelp.tabular.train.train_trees`.

Registered in ``kelp/cli.py`` with ``app.command("train-trees")(train_trees_command)``.
"""

import enum
from pathlib import Path
from typing import Annotated

import typer

from kelp._cli import errors, parse_folds
from kelp._progress import console, say

__all__ = ["DeviceChoice", "train_trees_command"]


class DeviceChoice(enum.StrEnum):
    """Where the tree libraries train."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def train_trees_command(
    data: Annotated[Path, typer.Argument(help="Dataset folder.")],
    run: Annotated[
        Path, typer.Option(help="Run folder: reads folds.csv and features/, writes tabular/, oof/.")
    ],
    models: Annotated[
        str | None,
        typer.Option(help="all, or comma-separated: lightgbm,xgboost,catboost,random_forest."),
    ] = None,
    folds: Annotated[str, typer.Option(help="Folds to train: all, or e.g. 0,2.")] = "all",
    device: Annotated[DeviceChoice | None, typer.Option(help="auto, cpu or cuda.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML with a [tabular] table (see the README).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seeds the inner split and models.")] = None,
    folds_file: Annotated[Path | None, typer.Option(help="Default RUN/folds.csv.")] = None,
    features: Annotated[Path | None, typer.Option(help="Default RUN/features.")] = None,
) -> None:
    """Train tree models per fold, write dense out-of-fold maps and the OOF report."""
    from kelp.config import load_config, validate_config
    from kelp.oof_report import report_table
    from kelp.tabular.config import TabularConfig
    from kelp.tabular.registry import parse_models
    from kelp.tabular.train import train_trees

    with errors():
        cfg = load_config(config, TabularConfig, "tabular") if config else TabularConfig()
        update: dict[str, object] = {}
        if models is not None:
            update["models"] = parse_models(models)
        if device is not None:
            update["device"] = device.value
        if seed is not None:
            update["seed"] = seed
        cfg = validate_config(TabularConfig, {**cfg.model_dump(), **update}, "options")
        manifest = train_trees(
            data, run, cfg, folds=parse_folds(folds), folds_file=folds_file, features=features
        )
    console.print(report_table(manifest["report"]))
    say(
        f"models in {run / 'tabular'}, out-of-fold maps in {run / 'oof'}, report in "
        f"{run / 'tabular' / 'report.json'} ({manifest['seconds']:.1f} s)"
    )
