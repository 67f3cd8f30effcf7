"""The CLI around the CNN stage: ``kelp train-cnn`` and ``kelp predict-cnn``.

Each command is a few lines around :func:`kelp.cnn.train.train_cnn` /
:func:`kelp.cnn.predict.predict_cnn`. torch is imported inside the functions so that
``kelp --help`` stays fast. Register them on the main app with::

    app.command("train-cnn")(train_cnn_command)
    app.command("predict-cnn")(predict_cnn_command)
"""

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from kelp._cli import errors, parse_folds
from kelp._progress import say

__all__ = ["predict_cnn_command", "train_cnn_command"]


class DeviceOption(enum.StrEnum):
    """Where the network runs."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class TilesOption(enum.StrEnum):
    """Which tiles of the dataset to predict."""

    test = "test"
    train = "train"
    all = "all"


DataArgument = Annotated[Path, typer.Argument(help="Dataset folder.")]
RunOption = Annotated[
    Path, typer.Option(help="Run directory: reads folds.csv and features/, writes cnn/ and oof/.")
]
FoldsOption = Annotated[
    str, typer.Option(help="'all', or comma-separated fold numbers such as 0,2.")
]
DeviceOpt = Annotated[
    DeviceOption | None, typer.Option(help="auto | cpu | cuda (default: the config's, auto).")
]
ConfigOption = Annotated[
    Path | None, typer.Option(help="TOML with a \\[cnn] table (see the README).")
]


def _config(path: Path | None, overrides: dict[str, Any]) -> Any:
    from kelp.cnn.config import CnnConfig
    from kelp.config import load_config, validate_config

    config = load_config(path, CnnConfig, "cnn") if path else CnnConfig()
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    return validate_config(CnnConfig, {**config.model_dump(), **given}, "command line")


def train_cnn_command(
    data: DataArgument,
    run: RunOption,
    folds: FoldsOption = "all",
    config: ConfigOption = None,
    device: DeviceOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
    folds_file: Annotated[
        Path | None, typer.Option(help="Folds CSV (default RUN/folds.csv).")
    ] = None,
    features: Annotated[
        Path | None, typer.Option(help="Feature build folder (default RUN/features).")
    ] = None,
) -> None:
    """Train a U-Net per fold and write its out-of-fold logits (RUN/cnn, RUN/oof/cnn)."""
    with errors():
        from kelp.cnn.train import train_cnn

        cfg = _config(
            config, {"device": device.value if device else None, "epochs": epochs, "seed": seed}
        )
        manifest = train_cnn(data, run, cfg, parse_folds(folds), folds_file, features)
    for k, fold in manifest["folds"].items():
        dice = fold["best_val_dice"]
        say(
            f"fold {k}: best epoch {fold['best_epoch']} of {fold['epochs_run']} "
            f"(by {fold['selected_by']}), val Dice "
            f"{'n/a' if dice is None else f'{dice:.4f}'}, {fold['seconds']:.0f} s"
        )
    say(f"checkpoints, logs and curves in {run / 'cnn'}; out-of-fold logits in {run / 'oof/cnn'}")


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
    tiles: Annotated[TilesOption, typer.Option(help="Which tiles to predict.")] = TilesOption.test,
    config: ConfigOption = None,
    device: DeviceOpt = None,
) -> None:
    """Predict dense logits for a dataset's tiles with the average of the fold models."""
    with errors():
        from kelp.cnn.predict import predict_cnn

        cfg = _config(config, {}) if config else None
        manifest = predict_cnn(
            data,
            run,
            out,
            parse_folds(folds),
            tta,
            batch_size or (cfg.batch_size if cfg else 8),
            device.value if device else (cfg.device if cfg else "auto"),
            tiles.value,
            cfg.channels if cfg else None,
        )
    where = out if out is not None else run / "test" / "cnn"
    say(
        f"{manifest['n_tiles']} tiles predicted by fold(s) {manifest['folds_used']}"
        f"{' with TTA' if manifest['tta'] else ''} in {manifest['seconds']:.1f} s: {where}"
    )
