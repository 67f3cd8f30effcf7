import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from kelp.cli import app
from kelp.data.io import write_mask

runner = CliRunner()


def test_stack_command_prints_the_comparison(oof_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = oof_run
    config = tmp_path / "stack.toml"
    config.write_text(
        '[stacking]\ncompare = ["logistic"]\n[stacking.postprocess]\n'
        "coarse_step = 0.1\nmin_areas = [0]\n"
    )
    result = runner.invoke(
        app, ["-q", "stack", str(data), "--run", str(run), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "stack-logistic" in result.output
    assert "decision (on out-of-fold fused maps): threshold" in result.output
    result = runner.invoke(
        app, ["-q", "stack", str(data), "--run", str(run), "--config", str(config)]
    )
    assert "up to date" in result.output

    config.write_text("[stacking]\nmeta = 'xgboost'\n")
    result = runner.invoke(app, ["stack", str(data), "--run", str(run), "--config", str(config)])
    assert result.exit_code == 1
    assert "meta" in result.output and "xgboost" in result.output
    result = runner.invoke(app, ["stack", str(data), "--run", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "kelp data folds" in result.output or "folds" in result.output


def test_evaluate_command(tmp_path: Path) -> None:
    truth = np.zeros((8, 8), np.uint8)
    truth[2:4, 2:4] = 1
    pred = truth.copy()
    pred[5, 5] = 1
    write_mask(tmp_path / "p" / "A0000001_kelp.tif", pred)
    write_mask(tmp_path / "t" / "A0000001_kelp.tif", truth)
    out = tmp_path / "scores.json"
    args = ["evaluate", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path / "t")]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "global Dice 0.8889" in result.output  # 2*4 / (5 + 4)
    assert json.loads(out.read_text())["tp"] == 4
    result = runner.invoke(
        app, ["evaluate", "--pred", str(tmp_path / "x"), "--truth", str(tmp_path / "t")]
    )
    assert result.exit_code == 1
    assert "prediction folder not found" in result.output
