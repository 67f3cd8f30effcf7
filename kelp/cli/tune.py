"""`kelp tune`: an Optuna study over a run's trees, CNN or stacker."""

import enum
from pathlib import Path
from typing import Annotated

import typer

from kelp._progress import say
from kelp.cli.shared import ClusterOption, app, cluster_config, errors, interrupt

__all__: list[str] = []


class TargetChoice(enum.StrEnum):
    """What a study tunes."""

    trees = "trees"
    cnn = "cnn"
    stack = "stack"


@app.command("tune", rich_help_panel="Pipeline")
def tune_command(
    config: Annotated[Path, typer.Argument(help="Experiment config (TOML), as for kelp run.")],
    target: Annotated[TargetChoice, typer.Option(help="What to tune.")],
    model: Annotated[
        str | None, typer.Option(help="Tree model (--target trees; default the first).")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Finished trials the study should hold (all runs).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Minutes this invocation may start trials for.")
    ] = None,
    jobs: Annotated[
        int, typer.Option(help="Trial loops at once: processes here, or tasks on --cluster.")
    ] = 1,
    write_config: Annotated[
        Path | None,
        typer.Option(help="Also write the config with the best values merged in here."),
    ] = None,
    mlflow: Annotated[
        bool, typer.Option(help="Log the study to MLflow (a run per trial).")
    ] = False,
    cluster: ClusterOption = None,
) -> None:
    """Tune the run's trees, CNN or stacker on its own folds; resumable; writes best.toml."""
    from kelp.cluster import connect
    from kelp.tune.study import TuneRequest, tune

    request = TuneRequest(target.value, model, trials, timeout, jobs, write_config)
    with errors(), interrupt(), connect(cluster_config(config, cluster)):
        summary = tune(config, request, mlflow=mlflow)
    best = summary["best"]
    counts = ", ".join(f"{n} {state}" for state, n in summary["counts"].items() if n)
    say(
        f"study {summary['study']}: {counts}; best trial {best['number']}: nested OOF Dice "
        f"{best['value']:.4f}; its values in {summary['best_toml']}"
    )
