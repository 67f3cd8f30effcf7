"""`kelp data ...`: synthesise, check, split into folds, pack masks."""

import enum
from pathlib import Path
from typing import Annotated

import typer

from kelp._progress import console, say
from kelp.cli.shared import (
    DEFAULT_BAND_ORDER_TEXT,
    BandOrderOption,
    OnErrorChoice,
    data_app,
    errors,
)

__all__: list[str] = []


class SynthPreset(enum.StrEnum):
    """How hard the synthetic dataset is (see ``kelp.data.synth_hard``)."""

    default = "default"
    hard = "hard"


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to create (must not hold a dataset).")],
    tiles: Annotated[int, typer.Option(help="Number of tiles, train + test.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    size: Annotated[int, typer.Option(help="Tile side in pixels.")] = 350,
    test_fraction: Annotated[float, typer.Option(help="Share of test tiles.")] = 0.2,
    preset: Annotated[
        SynthPreset,
        typer.Option(
            help="hard: confounders, faint canopy, miscalibrated dates, kelp-free look-alikes."
        ),
    ] = SynthPreset.default,
) -> None:
    """Write a synthetic dataset in the Kelp Wanted layout."""
    from kelp.data.synth import synthesize

    with errors():
        s = synthesize(
            out, tiles, seed=seed, size=size, test_fraction=test_fraction, preset=preset.value
        )
    n = s.n_train + s.n_test
    say(
        f"wrote {n} tiles ({s.preset} preset; {s.n_train} train, {s.n_test} test, "
        f"{s.n_areas} areas) to {s.root} in {s.seconds:.1f} s "
        f"({n / max(s.seconds, 1e-9):.1f} tiles/s); kelp "
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
    out: Annotated[
        Path, typer.Option(help="Folds CSV to write (tile_stats.csv goes beside it).")
    ] = Path("folds.csv"),
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
    on_error: Annotated[
        OnErrorChoice,
        typer.Option(help="fail: stop at any bad tile; skip: leave bad train tiles out, listed."),
    ] = OnErrorChoice.fail,
) -> None:
    """Group tiles into areas by their DEM and split the areas into k stratified folds."""
    from kelp.config import validate_config
    from kelp.data.config import FoldsConfig
    from kelp.data.stage import split_dataset
    from kelp.layout import RunLayout

    with errors():
        config = validate_config(
            FoldsConfig,
            {"k": k, "seed": seed, "threshold": threshold, "max_group_size": max_group_size,
             "file": from_file, "on_error": on_error.value},
            "command line",
        )  # fmt: skip
        layout = RunLayout.of(out.parent, root, folds=out, band_order=band_order.split(","))
        summary = split_dataset(config, layout)
    for fold, f in enumerate(summary["per_fold"]):
        say(f"fold {fold}: {f['tiles']} tiles, {f['areas']} areas, {f['with_kelp']} with kelp")
    say(f"{summary['n_train']} train tiles in {summary['n_areas']} areas, k={summary['k']}: {out}")
    if summary["area_ari"] is not None:
        say(
            f"area grouping vs the generator's areas: adjusted Rand index {summary['area_ari']:.3f}"
        )


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
