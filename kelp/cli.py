"""The `kelp` command: a few lines around each stage's function.

Every stage error is a ``ValueError``/``OSError`` subclass with a message that names the
file or value; the CLI prints it and exits with status 1 instead of a traceback.
"""

import contextlib
import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from kelp import __version__
from kelp._cli import errors
from kelp._progress import console, say, set_quiet

__all__ = ["app"]

app = typer.Typer(
    name="kelp",
    help="Segment kelp canopy in multispectral tiles: trees + U-Net, stacked.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Datasets: synthesise, check, split into folds, pack masks.", no_args_is_help=True
)
app.add_typer(data_app, name="data", rich_help_panel="Data")


def _register_stage_commands() -> None:
    # Each stage's CLI function lives beside its stage; importing them loads no torch.
    from kelp.cnn.commands import predict_cnn_command, train_cnn_command
    from kelp.tabular.commands import train_trees_command

    app.command("train-trees", rich_help_panel="Stages")(train_trees_command)
    app.command("train-cnn", rich_help_panel="Stages")(train_cnn_command)
    app.command("predict-cnn", rich_help_panel="Stages")(predict_cnn_command)


BandOrderOption = Annotated[
    str,
    typer.Option(
        "--band-order",
        help="The file's bands, first band first, comma-separated.",
    ),
]
DEFAULT_BAND_ORDER_TEXT = "swir,nir,red,green,blue,qa,dem"


class OnErrorChoice(enum.StrEnum):
    """What a stage does with a bad tile."""

    fail = "fail"
    skip = "skip"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kelp {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Segment kelp canopy in multispectral tiles: trees + U-Net, stacked."""
    set_quiet(quiet)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to create (must not hold a dataset).")],
    tiles: Annotated[int, typer.Option(help="Number of tiles, train + test.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    size: Annotated[int, typer.Option(help="Tile side in pixels.")] = 350,
    test_fraction: Annotated[float, typer.Option(help="Share of test tiles.")] = 0.2,
) -> None:
    """Write a synthetic dataset in the Kelp Wanted layout."""
    from kelp.data.synth import synthesize

    with errors():
        s = synthesize(out, tiles, seed=seed, size=size, test_fraction=test_fraction)
    n = s.n_train + s.n_test
    say(
        f"wrote {n} tiles ({s.n_train} train, {s.n_test} test, {s.n_areas} areas) to {s.root} "
        f"in {s.seconds:.1f} s ({n / max(s.seconds, 1e-9):.1f} tiles/s); kelp "
        f"{100 * s.kelp_fraction:.2f}% of train pixels, {s.tiles_without_kelp} train tiles "
        "without kelp"
    )


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option(help="Per-tile statistics CSV.")] = Path("tile_stats.csv"),
    band_order: BandOrderOption = DEFAULT_BAND_ORDER_TEXT,
    verify_md5: Annotated[
        bool, typer.Option(help="Compare every file with the metadata CSV's MD5.")
    ] = False,
) -> None:
    """Validate every tile, list ALL problems, write per-tile statistics."""
    from kelp.data.check import check_dataset, write_stats

    with errors():
        report = check_dataset(root, band_order.split(","), verify_md5=verify_md5)
        if report.stats:
            write_stats(report.stats, out)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
    n_train = sum(1 for s in report.stats if s["split"] == "train")
    with_kelp = sum(1 for s in report.stats if s["has_kelp"])
    summary = (
        f"{len(report.stats)} valid tiles ({n_train} train, {with_kelp} with kelp), "
        f"{len(report.problems)} problem(s), {len(report.warnings)} warning(s)"
    )
    if report.stats:
        summary += f"; statistics in {out}"
    say(summary)
    if report.problems:
        raise typer.Exit(1)


@data_app.command("folds")
def data_folds(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option(help="Folds CSV to write.")] = Path("folds.csv"),
    k: Annotated[int, typer.Option("--k", "-k", help="Number of folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Shuffles areas across folds.")] = 0,
    threshold: Annotated[
        float,
        typer.Option(help="DEM height and slope correlation that links two tiles into one area."),
    ] = 0.97,
    max_group_size: Annotated[
        int | None, typer.Option(help="Largest area; default ceil(n_train / k).")
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="Validate and adopt this folds CSV instead of making one."),
    ] = None,
    band_order: BandOrderOption = DEFAULT_BAND_ORDER_TEXT,
) -> None:
    """Group tiles into areas by their DEM and split the areas into k stratified folds."""
    from kelp.data.catalog import open_catalog
    from kelp.data.folds import area_recovery, make_folds, read_folds, write_folds

    with errors():
        if from_file is not None:
            assignment = read_folds(from_file, open_catalog(root))
        else:
            assignment = make_folds(root, k, seed, threshold, max_group_size, band_order.split(","))
        write_folds(assignment, out)
    for fold in range(assignment.k):
        held = [i for i, f in enumerate(assignment.folds) if f == fold]
        kelp = sum(1 for i in held if assignment.flags and assignment.flags[i]["has_kelp"])
        areas = len({assignment.aoi_ids[i] for i in held})
        say(f"fold {fold}: {len(held)} tiles, {areas} areas, {kelp} with kelp")
    n_areas = len(set(assignment.aoi_ids))
    say(f"{len(assignment.tile_ids)} train tiles in {n_areas} areas, k={assignment.k}: {out}")
    ari = area_recovery(root, assignment)
    if ari is not None:
        say(f"area grouping vs the generator's areas: adjusted Rand index {ari:.3f}")


@data_app.command("pack")
def data_pack(
    masks: Annotated[Path, typer.Argument(help="Folder of <tile_id>_kelp.tif masks.")],
    out: Annotated[Path, typer.Option(help="Tar to write.")] = Path("submission.tar"),
) -> None:
    """Pack a folder of predicted masks into submission.tar (competition naming)."""
    from kelp.data.io import pack_submission

    with errors():
        if not masks.is_dir():
            raise FileNotFoundError(f"{masks}: folder not found")
        path = pack_submission(sorted(masks.glob("*_kelp.tif")), out)
    say(f"packed {path}")


@app.command("build-features", rich_help_panel="Stages")
def build_features_command(
    data: Annotated[Path, typer.Argument(help="Dataset folder.")],
    folds: Annotated[Path, typer.Option(help="folds.csv from `kelp data folds`.")],
    out: Annotated[Path, typer.Option(help="Output folder (resumed if present).")] = Path(
        "features"
    ),
    config: Annotated[
        Path | None, typer.Option(help="TOML with a \\[features] table (see the README).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    seed: Annotated[int, typer.Option(help="Seeds the pixel sampling.")] = 0,
    on_error: Annotated[
        OnErrorChoice, typer.Option(help="fail: stop at a bad tile; skip: list it in the manifest.")
    ] = OnErrorChoice.fail,
    dense: Annotated[bool, typer.Option(help="Keep every pixel instead of sampling.")] = False,
    band_order: BandOrderOption = DEFAULT_BAND_ORDER_TEXT,
) -> None:
    """Build the per-pixel Parquet feature table of the train tiles."""
    from kelp.config import load_config
    from kelp.features.build import build_features
    from kelp.features.config import FeatureConfig

    with errors():
        cfg = load_config(config, FeatureConfig, "features") if config else FeatureConfig()
        if dense:
            cfg = cfg.model_copy(
                update={"sampling": cfg.sampling.model_copy(update={"dense": True})}
            )
        manifest = build_features(
            data,
            folds,
            out,
            cfg,
            seed,
            workers,
            on_error.value,
            band_order.split(","),
        )
    say(
        f"{manifest['n_tiles']} tiles, {manifest['n_rows']} rows, "
        f"{len(manifest['feature_names'])} features in {out / 'table'}; "
        f"{len(manifest['skipped'])} skipped; {manifest['seconds']:.1f} s"
    )


@app.command("stack", rich_help_panel="Stages")
def stack_command(
    data: Annotated[Path, typer.Argument(help="Dataset folder (train masks and DEMs).")],
    run: Annotated[Path, typer.Option(help="Run folder with folds.csv and oof/.")],
    config: Annotated[
        Path | None, typer.Option(help="TOML with a \\[stacking] table (see the README).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Redo even if up to date.")] = False,
) -> None:
    """Fuse out-of-fold maps, compare with each model alone, choose the threshold."""
    from kelp.config import load_config
    from kelp.stacking.config import StackConfig
    from kelp.stacking.stack import stack

    with errors():
        cfg = load_config(config, StackConfig, "stacking") if config else StackConfig()
        stack(data, run, cfg, force=force)
    _print_results(run, {})


@app.command("evaluate", rich_help_panel="Stages")
def evaluate_command(
    pred: Annotated[Path, typer.Option(help="Folder of predicted <tile_id>_kelp.tif.")],
    truth: Annotated[Path, typer.Option(help="Folder of true <tile_id>_kelp.tif.")],
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON.")] = None,
) -> None:
    """Global Dice, IoU, precision and recall of a folder of masks."""
    import json

    from kelp._files import atomic_path
    from kelp.stacking.evaluate import evaluate_masks

    with errors():
        summary = evaluate_masks(pred, truth)
        if out is not None:
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps(summary, indent=2))
    typer.echo(
        f"global Dice {summary['dice']:.4f}  IoU {summary['iou']:.4f}  "
        f"precision {summary['precision']:.4f}  recall {summary['recall']:.4f}  "
        f"mean per-tile Dice {summary['mean_tile_dice']:.4f}  tiles {summary['n_tiles']}"
    )


@app.command("predict", rich_help_panel="Stages")
def predict_command(
    data: Annotated[Path, typer.Option(help="Folder of test tiles (any layout).")],
    run: Annotated[Path, typer.Option(help="Run folder with stacking/ and base models.")],
    out: Annotated[
        Path | None, typer.Option(help="Mask folder; RUN/predictions by default.")
    ] = None,
    on_error: Annotated[
        OnErrorChoice, typer.Option(help="fail: stop at a bad tile; skip: leave it out.")
    ] = OnErrorChoice.fail,
    tta: Annotated[
        bool | None, typer.Option(help="CNN test-time augmentation (default: as for OOF).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda for the CNN.")] = "auto",
) -> None:
    """Predict masks for test tiles with the stacked models; write submission.tar."""
    from kelp.stacking.predict import predict

    with errors():
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
        predict(data, run, out, on_error.value, tta, device)  # type: ignore[arg-type]


_register_stage_commands()


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
) -> None:
    """Run the whole pipeline in runs/<name>/, skipping what is up to date."""
    from kelp.pipeline.config import load_run_config
    from kelp.pipeline.run import run_pipeline

    with errors():
        cfg = load_run_config(config)
        if mlflow:
            tracking = cfg.tracking.model_copy(update={"mlflow": True})
            cfg = cfg.model_copy(update={"tracking": tracking})
        with _interrupt():
            record = run_pipeline(cfg, config.read_text(), only, start, force)  # type: ignore[arg-type]
    _print_results(Path(record["run_dir"]), record)


@contextlib.contextmanager
def _interrupt() -> Iterator[None]:
    """Ctrl-C: one line saying how to resume, exit status 130, no traceback."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/yellow] finished work is kept; run the same command again "
            "to resume"
        )
        raise typer.Exit(130) from None


def _print_results(run: Path, record: dict[str, object]) -> None:
    import json

    from kelp.stacking.stack import comparison_table

    report = run / "stacking" / "comparison.json"
    if report.is_file():
        console.print(comparison_table(json.loads(report.read_text())))
    decision = run / "stacking" / "decision.json"
    if decision.is_file():
        d = json.loads(decision.read_text())
        say(
            f"final masks (post-processing chosen on out-of-fold maps): nested global Dice "
            f"{d['dice']:.4f}, in-sample {d['in_sample']['dice']:.4f}"
        )
    if record:
        say(
            f"run folder: {run}  (stages' wall time {record.get('seconds')} s, this invocation "
            f"{record.get('invocation_seconds')} s)"
        )
        say(f"report: {record.get('report')}")


@app.command("demo", rich_help_panel="Pipeline")
def demo_command(
    runs_dir: Annotated[Path, typer.Option(help="Where the demo run goes.")] = Path("runs"),
    force: Annotated[bool, typer.Option(help="Redo every stage from scratch.")] = False,
) -> None:
    """Synthesise a small dataset and run the whole pipeline on it (CPU, a few minutes)."""
    from importlib.resources import files

    from kelp.config import validate_config
    from kelp.pipeline.config import RunConfig
    from kelp.pipeline.run import run_pipeline

    text = files("kelp.pipeline").joinpath("presets/demo.toml").read_text()
    with errors():
        import tomllib

        values = tomllib.loads(text) | {"runs_dir": str(runs_dir)}
        cfg = validate_config(RunConfig, values, where="demo preset")
        with _interrupt():
            record = run_pipeline(cfg, text, force=force)
    _print_results(Path(record["run_dir"]), record)


@app.command("runs", rich_help_panel="Pipeline")
def runs_command(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of runs.")] = Path("runs"),
) -> None:
    """List runs with their status, wall time and key metrics."""
    from kelp.pipeline.runs import list_runs, runs_table

    with errors():
        runs = list_runs(runs_dir)
    console.print(runs_table(runs))


@app.command("compare", rich_help_panel="Pipeline")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="First run folder.")],
    run_b: Annotated[Path, typer.Argument(help="Second run folder.")],
) -> None:
    """Show the config and metric differences between two runs."""
    from rich.table import Table

    from kelp.pipeline.runs import compare_runs

    with errors():
        diff = compare_runs(run_a, run_b)
    config = Table(title="config differences", title_justify="left")
    for column in ("key", run_a.name, run_b.name):
        config.add_column(column)
    for key, a, b in diff["config"]:
        config.add_row(key, str(a), str(b))
    metrics = Table(title="metrics", title_justify="left")
    for column in ("metric", run_a.name, run_b.name, "B - A"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    for name, a, b, delta in diff["metrics"]:
        metrics.add_row(name, fmt(a), fmt(b), "" if delta is None else f"{delta:+.4f}")
    if not diff["config"]:
        say("configs are identical")
    else:
        console.print(config)
    console.print(metrics)
