"""The stage commands end to end on tiny data: options over the config file, bad input."""

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from kelp.cli import app

runner = CliRunner()


def test_build_features_command(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset(n_areas=4, dates=2, n_test=0)
    folds = tmp_path / "folds.csv"
    assert (
        runner.invoke(app, ["data", "folds", str(root), "--out", str(folds), "-k", "2"]).exit_code
        == 0
    )
    config = tmp_path / "features.toml"
    config.write_text(
        '[features]\nindices = ["NDVI"]\n[features.filters]\nchannels = ["nir"]\nsigmas = [1]\n'
    )
    out = tmp_path / "features"
    args = ["-q", "build-features", str(root), "--folds", str(folds), "--out", str(out)]
    result = runner.invoke(app, [*args, "--config", str(config), "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert "8 tiles" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["indices"] == ["NDVI"]

    config.write_text("[features]\nindexes = ['NDVI']\n")
    result = runner.invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 1
    assert "unknown key 'indexes'" in result.output
    assert json.loads((out / "manifest.json").read_text()) == manifest  # untouched
    config.write_text("[features\n")
    result = runner.invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 1
    assert "not valid TOML" in result.output
    result = runner.invoke(app, [*args, "--on-error", "ignore"])
    assert result.exit_code == 2  # typer rejects an invalid choice
