"""The stage commands: each builds its stage's config and layout, then calls the stage.

`kelp run` calls the same functions (``kelp.pipeline.run``); a command's options override
its config file's ``[stage]`` table, and ``--run`` / ``--folds-file`` / ``--features`` say
where the run folder and its inputs are (:class:`kelp.layout.RunLayout`).
"""

import enum
from pathlib import Path
from typing import Annotated

import typer

from kelp._progress import console, say
from kelp.cli.shared import (
    DEFAULT_BAND_ORDER_TEXT,
    BandOrderOption,
    ClusterOption,
    DeviceChoice,
    OnErrorChoice,
    app,
    cluster_config,
    errors,
    exit_if_tiles_missing,
    parse_folds,
    stage_config,
)

__all__: list[str] = []

DataArgument = Annotated[Path, typer.Argument(help="Dataset folder.")]
RunOption = Annotated[
    Path, typer.Option(help="Run folder: reads folds.csv and features/, writes the stage's output.")
]
FoldsOption = Annotated[str, typer.Option(help="Folds to train: all, or e.g. 0,2.")]
DeviceOption = Annotated[
    DeviceChoice | None, typer.Option(help="auto, cpu or cuda (default: the config's, auto).")
]
FoldsFileOption = Annotated[Path | None, typer.Option(help="Folds CSV (default RUN/folds.csv).")]
FeaturesOption = Annotated[
    Path | None, typer.Option(help="Feature build folder (default RUN/features).")
]


_AUTO = DeviceChoice("auto")


def _config_option(section: str) -> object:
    return typer.Option(help=f"TOML with a \\[{section}] table (see the README).")


class TilesChoice(enum.StrEnum):
    """Which tiles of a dataset to predict."""

    test = "test"
    train = "train"
    all = "all"


@app.command("build-features", rich_help_panel="Stages")
def build_features_command(
    data: DataArgument,
    folds: Annotated[Path, typer.Option(help="folds.csv from `kelp data folds`.")],
    out: Annotated[Path, typer.Option(help="Output folder (resumed if present).")] = Path(
        "features"
    ),
    config: Annotated[Path | None, _config_option("features")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seeds the pixel sampling.")] = None,
    on_error: Annotated[
        OnErrorChoice | None,
        typer.Option(help="fail: stop at a bad tile; skip: list it in the manifest."),
    ] = None,
    dense: Annotated[bool, typer.Option(help="Keep every pixel instead of sampling.")] = False,
    band_order: BandOrderOption = DEFAULT_BAND_ORDER_TEXT,
    cluster: ClusterOption = None,
) -> None:
    """Build the per-pixel Parquet feature table of the train tiles."""
    from kelp.cluster import connect
    from kelp.features.build import build_features
    from kelp.features.config import FeatureConfig
    from kelp.layout import RunLayout

    with errors():
        cfg = stage_config(
            FeatureConfig, "features", config, workers=workers,
            on_error=on_error.value if on_error else None,
            sampling={"seed": seed, "dense": True if dense else None},
        )  # fmt: skip
        layout = RunLayout.of(
            out.parent, data, folds=folds, features=out, band_order=band_order.split(",")
        )
        with connect(cluster_config(config, cluster)):
            manifest = build_features(cfg, layout)
    say(
        f"{manifest['n_tiles']} tiles, {manifest['n_rows']} rows, "
        f"{len(manifest['feature_names'])} features in {out / 'table'}; "
        f"{len(manifest['skipped'])} skipped; {manifest['seconds']:.1f} s"
    )


@app.command("train-trees", rich_help_panel="Stages")
def train_trees_command(
    data: DataArgument,
    run: RunOption,
    models: Annotated[
        str | None,
        typer.Option(help="all, or comma-separated: lightgbm,xgboost,catboost,random_forest."),
    ] = None,
    folds: FoldsOption = "all",
    device: DeviceOption = None,
    config: Annotated[Path | None, _config_option("tabular")] = None,
    seed: Annotated[int | None, typer.Option(help="Seeds the inner split and models.")] = None,
    folds_file: FoldsFileOption = None,
    features: FeaturesOption = None,
    cluster: ClusterOption = None,
) -> None:
    """Train tree models per fold, write dense out-of-fold maps and the OOF report."""
    from kelp.cli.tables import report_table
    from kelp.cluster import connect
    from kelp.layout import RunLayout
    from kelp.tabular.config import TabularConfig
    from kelp.tabular.registry import parse_models
    from kelp.tabular.train import train_trees

    with errors():
        cfg = stage_config(
            TabularConfig, "tabular", config,
            models=parse_models(models) if models is not None else None,
            device=device.value if device else None, seed=seed,
        )  # fmt: skip
        layout = RunLayout.of(run, data, folds=folds_file, features=features)
        with connect(cluster_config(config, cluster)):
            manifest = train_trees(cfg, layout, folds=parse_folds(folds))
    console.print(report_table(manifest["report"]))
    say(
        f"models in {layout.tabular}, out-of-fold maps in {layout.oof_dir}, report in "
        f"{layout.tabular / 'report.json'} ({manifest['seconds']:.1f} s)"
    )


@app.command("train-cnn", rich_help_panel="Stages")
def train_cnn_command(
    data: DataArgument,
    run: RunOption,
    folds: FoldsOption = "all",
    config: Annotated[Path | None, _config_option("cnn")] = None,
    device: DeviceOption = None,
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
    folds_file: FoldsFileOption = None,
    features: FeaturesOption = None,
    cluster: ClusterOption = None,
) -> None:
    """Train a U-Net per fold and write its out-of-fold logits (RUN/cnn, RUN/oof/cnn)."""
    with errors():
        from kelp.cluster import connect
        from kelp.cnn.config import CnnConfig
        from kelp.cnn.train import train_cnn
        from kelp.layout import RunLayout

        cfg = stage_config(
            CnnConfig, "cnn", config, device=device.value if device else None, epochs=epochs,
            seed=seed,
        )  # fmt: skip
        layout = RunLayout.of(run, data, folds=folds_file, features=features)
        with connect(cluster_config(config, cluster)):
            manifest = train_cnn(cfg, layout, folds=parse_folds(folds))
    for k, fold in manifest["folds"].items():
        dice = fold["best_val_dice"]
        say(
            f"fold {k}: best epoch {fold['best_epoch']} of {fold['epochs_run']} "
            f"(by {fold['selected_by']}), val Dice "
            f"{'n/a' if dice is None else f'{dice:.4f}'}, {fold['seconds']:.0f} s"
        )
    say(f"checkpoints, logs and curves in {layout.cnn}; out-of-fold logits in {layout.oof('cnn')}")


@app.command("predict-cnn", rich_help_panel="Stages")
def predict_cnn_command(
    data: DataArgument,
    run: RunOption,
    out: Annotated[
        Path | None, typer.Option(help="Output map folder (default RUN/test/cnn).")
    ] = None,
    folds: FoldsOption = "all",
    tta: Annotated[
        bool | None,
        typer.Option("--tta/--no-tta", help="8x flip/rotation TTA (default: as the OOF logits)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tiles per forward pass.")] = None,
    tiles: Annotated[TilesChoice, typer.Option(help="Which tiles to predict.")] = TilesChoice.test,
    config: Annotated[Path | None, _config_option("cnn")] = None,
    device: DeviceOption = None,
) -> None:
    """Predict dense logits for a dataset's tiles with the average of the fold models."""
    with errors():
        from kelp.cnn.config import CnnConfig
        from kelp.cnn.predict import predict_cnn
        from kelp.layout import RunLayout

        cfg = stage_config(CnnConfig, "cnn", config) if config else None
        manifest = predict_cnn(
            data,
            run,
            out,
            parse_folds(folds),
            tta,
            batch_size or (cfg.batch_size if cfg else 8),
            device.value if device else (cfg.device if cfg else "auto"),  # type: ignore[arg-type]
            tiles.value,
            cfg.channels if cfg else None,
        )
    where = out if out is not None else RunLayout.of(run).test("cnn")
    say(
        f"{manifest['n_tiles']} tiles predicted by fold(s) {manifest['folds_used']}"
        f"{' with TTA' if manifest['tta'] else ''} in {manifest['seconds']:.1f} s: {where}"
    )


@app.command("stack", rich_help_panel="Stages")
def stack_command(
    data: Annotated[Path, typer.Argument(help="Dataset folder (train masks and DEMs).")],
    run: Annotated[Path, typer.Option(help="Run folder with folds.csv and oof/.")],
    config: Annotated[Path | None, _config_option("stacking")] = None,
    force: Annotated[bool, typer.Option(help="Redo even if up to date.")] = False,
) -> None:
    """Fuse out-of-fold maps, compare with each model alone, choose the threshold."""
    from kelp.cli.tables import print_results
    from kelp.layout import RunLayout
    from kelp.stacking.config import StackConfig
    from kelp.stacking.stack import stack

    with errors():
        cfg = stage_config(StackConfig, "stacking", config)
        stack(cfg, RunLayout.of(run, data), force=force)
    print_results(run)


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
    device: Annotated[DeviceChoice, typer.Option(help="auto, cpu or cuda for the CNN.")] = _AUTO,
    cluster: ClusterOption = None,
) -> None:
    """Predict masks for test tiles with the stacked models; write submission.tar."""
    from kelp.cluster import connect
    from kelp.layout import RunLayout
    from kelp.stacking.config import PredictConfig
    from kelp.stacking.predict import predict

    with errors():
        cfg = stage_config(
            PredictConfig, "predict", None, data=data, out=out, on_error=on_error.value,
            tta=tta, device=device.value,
        )  # fmt: skip
        with connect(cluster_config(None, cluster)):
            manifest = predict(cfg, RunLayout.of(run))
    exit_if_tiles_missing(manifest)


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
