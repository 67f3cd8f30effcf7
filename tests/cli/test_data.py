"""`kelp data check|folds|pack` end to end on tiny data: exit codes, messages and files."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kelp.cli import app
from kelp.data.io import write_mask

runner = CliRunner()


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
