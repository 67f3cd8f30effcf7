"""The `train-trees` command of the `kelp` CLI."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kelp.cli import app
from tests.tabular.conftest import Run


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "kelp.toml"
    path.write_text(
        "[tabular]\nmax_rounds = 5\nn_jobs = 2\n"
        "[tabular.params.lightgbm]\nnum_leaves = 7\nmin_data_in_leaf = 5\n"
    )
    return path


def test_train_trees_command(trained: Run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "train-trees", str(trained.data), "--run", str(run), "--models", "lightgbm",
        "--folds", "0,2", "--device", "cpu", "--config", str(_config(tmp_path)),
        "--folds-file", str(trained.run / "folds.csv"),
        "--features", str(trained.run / "features"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "out-of-fold global Dice" in result.output
    assert "lightgbm: training on CPU (requested)" in result.output
    assert (run / "tabular" / "lightgbm" / "fold=2" / "model.txt").is_file()
    assert not (run / "tabular" / "lightgbm" / "fold=1").exists()
    assert not (run / "tabular" / "xgboost").exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--models", "lightgbm,svm"], "unknown model 'svm'; valid: lightgbm, xgboost"),
        (["--folds", "0,7"], r"fold\(s\) \[7\] do not exist"),
    ],
)
def test_bad_options_exit_1_with_a_message(
    trained: Run, tmp_path: Path, extra: list[str], match: str
) -> None:
    args = ["train-trees", str(trained.data), "--run", str(trained.run), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "error:" in result.output
    assert re.search(match, " ".join(result.output.split()))


def test_malformed_folds_is_a_usage_error(trained: Run) -> None:
    args = ["train-trees", str(trained.data), "--run", str(trained.run), "--folds", "first"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "expected 'all' or fold numbers" in " ".join(result.output.split())


def test_missing_features_say_which_command_to_run(trained: Run, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train-trees", str(trained.data), "--run", str(tmp_path)])
    assert result.exit_code == 1
    assert "kelp build-features" in result.output
