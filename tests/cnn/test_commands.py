"""The `train-cnn` and `predict-cnn` commands of the `kelp` CLI."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kelp.cli import app
from kelp.maps import MapStore

runner = CliRunner()

CONFIG = """
[cnn]
channels = ["nir", "swir", "NDVI", "dem_water"]
encoder = "resnet18"
encoder_depth = 3
decoder_channels = [16, 8, 8]
epochs = 3
warmup_epochs = 0.5
batch_size = 4
lr = 0.05
tta = false
"""


@pytest.mark.usefixtures("conv1x1")
def test_train_then_predict(run_dir: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = run_dir
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    args = ["train-cnn", str(data), "--run", str(run), "--config", str(config)]
    result = runner.invoke(app, [*args, "--folds", "1", "--epochs", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "fold 1: best epoch" in result.output
    assert "epoch 2/2" in result.output
    assert MapStore(run / "oof" / "cnn").manifest()["folds"]
    assert not (run / "cnn" / "fold=0").exists()

    out = tmp_path / "maps"
    result = runner.invoke(
        app, ["predict-cnn", str(data), "--run", str(run), "--out", str(out), "--tta"]
    )
    assert result.exit_code == 0, result.output
    assert "1 tiles predicted by fold(s) [1] with TTA" in result.output
    assert MapStore(out).manifest()["tta"] is True


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (["--folds", "zero"], 2, "expected 'all' or fold numbers"),
        (["--device", "tpu"], 2, "tpu"),
        (["--epochs", "0"], 1, "epochs"),
    ],
)
def test_bad_arguments(run_dir: tuple[Path, Path], args: list[str], code: int, match: str) -> None:
    data, run = run_dir
    result = runner.invoke(app, ["train-cnn", str(data), "--run", str(run), *args])
    assert result.exit_code == code
    assert match in result.output


def test_missing_features_says_what_to_run(run_dir: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = run_dir
    result = runner.invoke(app, ["train-cnn", str(data), "--run", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "error:" in result.output
    result = runner.invoke(
        app, ["train-cnn", str(data), "--run", str(run), "--features", str(tmp_path / "none")]
    )
    assert result.exit_code == 1
    assert "kelp build-features" in result.output
    result = runner.invoke(app, ["predict-cnn", str(data), "--run", str(run)])
    assert result.exit_code == 1
    assert "kelp train-cnn" in result.output
