"""`kelp run`, `kelp demo`, `kelp runs`, `kelp compare`: whole runs."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kelp._progress import console, say
from kelp.cli.shared import (
    ClusterOption,
    app,
    cluster_config,
    errors,
    exit_if_tiles_missing,
    interrupt,
)

if TYPE_CHECKING:
    from kelp.pipeline.config import RunConfig

__all__: list[str] = []


@app.command("run", rich_help_panel="Pipeline")
def run_command(
    config: Annotated[Path, typer.Argument(help="Experiment config (TOML).")],
    only: Annotated[
        str | None,
        typer.Option(
            "--only", help="Run just this stage: folds, features, trees, cnn, stack, predict."
        ),
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Run from this stage on.")] = None,
    force: Annotated[bool, typer.Option(help="Redo the selected stages from scratch.")] = False,
    mlflow: Annotated[bool, typer.Option(help="Log the run to MLflow.")] = False,
    cluster: ClusterOption = None,
) -> None:
    """Run the whole pipeline in runs/<name>/, skipping what is up to date."""
    from kelp.cli.tables import print_results
    from kelp.pipeline.config import load_run_config
    from kelp.pipeline.run import run_pipeline

    with errors():
        cfg = load_run_config(config)
        if mlflow:
            tracking = cfg.tracking.model_copy(update={"mlflow": True})
            cfg = cfg.model_copy(update={"tracking": tracking})
        if cluster is not None:
            cfg = cfg.model_copy(update={"cluster": cluster_config(config, cluster)})
        with interrupt():
            record = run_pipeline(cfg, config.read_text(), only, start, force)  # type: ignore[arg-type]
    print_results(Path(record["run_dir"]), record)
    _exit_if_tiles_missing(cfg)


@app.command("demo", rich_help_panel="Pipeline")
def demo_command(
    runs_dir: Annotated[Path, typer.Option(help="Where the demo run goes.")] = Path("runs"),
    force: Annotated[bool, typer.Option(help="Redo every stage from scratch.")] = False,
) -> None:
    """Synthesise a small dataset and run the whole pipeline on it (CPU, a few minutes)."""
    from importlib.resources import files

    from kelp.cli.tables import print_results
    from kelp.config import load_toml, validate_config
    from kelp.pipeline.config import RunConfig
    from kelp.pipeline.run import run_pipeline

    preset = Path(str(files("kelp.pipeline").joinpath("presets/demo.toml")))
    with errors():
        values = load_toml(preset) | {"runs_dir": str(runs_dir)}
        cfg = validate_config(RunConfig, values, where="demo preset")
        with interrupt():
            record = run_pipeline(cfg, preset.read_text(), force=force)
    print_results(Path(record["run_dir"]), record)
    _exit_if_tiles_missing(cfg)


def _exit_if_tiles_missing(config: "RunConfig") -> None:
    from kelp.artifacts import read_marker

    out = config.predict.out if config.predict.out is not None else config.layout().predictions
    exit_if_tiles_missing(read_marker(out / "manifest.json") or {})


@app.command("runs", rich_help_panel="Pipeline")
def runs_command(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of runs.")] = Path("runs"),
) -> None:
    """List runs with their status, wall time and key metrics."""
    from kelp.cli.tables import runs_table
    from kelp.pipeline.runs import list_runs

    with errors():
        runs = list_runs(runs_dir)
    console.print(runs_table(runs))


@app.command("compare", rich_help_panel="Pipeline")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="First run folder.")],
    run_b: Annotated[Path, typer.Argument(help="Second run folder.")],
) -> None:
    """Show the config and metric differences between two runs."""
    from kelp.cli.tables import compare_tables
    from kelp.pipeline.runs import compare_runs

    with errors():
        diff = compare_runs(run_a, run_b)
    config, metrics = compare_tables(diff, run_a.name, run_b.name)
    if not diff["config"]:
        say("configs are identical")
    else:
        console.print(config)
    console.print(metrics)
