"""The CLI end to end on tiny data: exit codes, messages and files."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from kelp import __version__
from kelp.cli import app
from kelp.cli.shared import parse_folds
from kelp.data.io import write_mask

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"kelp {__version__}"
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0
    for command in ("synth", "check", "folds", "pack"):
        assert command in result.stdout


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kelp", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"kelp {__version__}"


def test_check_writes_stats_and_exits_1_on_problems(
    tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    root = tiny_dataset(n_areas=2, dates=2, n_test=1)
    out = tmp_path / "stats.csv"
    result = runner.invoke(app, ["-q", "data", "check", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 1 + 5

    (root / "train_kelp" / "A0000001_kelp.tif").write_text("broken")
    (root / "train_satellite" / "A0100000_satellite.tif").write_text("broken")
    result = runner.invoke(app, ["-q", "data", "check", str(root), "--out", str(out)])
    assert result.exit_code == 1
    assert "A0000001_kelp.tif" in result.output
    assert "A0100000_satellite.tif" in result.output
    assert "4 problem(s)" in result.output  # each file: size differs from metadata + unreadable


def test_check_missing_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "folder not found" in result.output


def test_check_bad_band_order(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(n_areas=1, dates=1, n_test=0)
    result = runner.invoke(app, ["data", "check", str(root), "--band-order", "a,b"])
    assert result.exit_code == 1
    assert "band order" in result.output


def test_folds_make_then_adopt(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset(n_areas=6, dates=2, n_test=0)
    out = tmp_path / "folds.csv"
    result = runner.invoke(app, ["data", "folds", str(root), "--out", str(out), "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "12 train tiles in 6 areas, k=3" in result.output
    adopted = tmp_path / "adopted.csv"
    args = ["data", "folds", str(root), "--from", str(out), "--out", str(adopted)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert adopted.read_text() == out.read_text()

    before = adopted.read_text()
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(out.read_text().splitlines()[:-1]) + "\n")
    result = runner.invoke(
        app, ["data", "folds", str(root), "--from", str(broken), "--out", str(adopted)]
    )
    assert result.exit_code == 1
    assert "without a fold" in result.output
    assert adopted.read_text() == before  # nothing already written is touched


def test_pack(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    write_mask(masks / "AB123456_kelp.tif", np.zeros((4, 4), np.uint8))
    out = tmp_path / "submission.tar"
    result = runner.invoke(app, ["data", "pack", str(masks), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_pack_bad_input(tmp_path: Path, where: str) -> None:
    masks = tmp_path / "masks"
    if where == "empty":
        masks.mkdir()
    result = runner.invoke(app, ["data", "pack", str(masks), "--out", str(tmp_path / "s.tar")])
    assert result.exit_code == 1
    assert ("folder not found" if where == "missing" else "no masks") in result.output


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


@pytest.mark.parametrize(
    ("text", "folds"), [("all", None), ("ALL", None), ("2, 0", [2, 0]), ("0,2", [0, 2])]
)
def test_parse_folds(text: str, folds: list[int] | None) -> None:
    assert parse_folds(text) == folds


@pytest.mark.parametrize("text", ["-1", "", "one", "0,x"])
def test_parse_folds_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="expected 'all' or fold numbers"):
        parse_folds(text)
