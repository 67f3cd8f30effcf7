"""What every command shares: fold lists, the one error handler, config overrides."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from kelp.cli.shared import errors, interrupt, parse_folds, stage_config
from kelp.errors import ConfigError, InputError
from kelp.features.config import FeatureConfig

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "folds"), [("all", None), ("ALL", None), ("2, 0", [2, 0]), ("0,2", [0, 2])]
)
def test_parse_folds(text: str, folds: list[int] | None) -> None:
    assert parse_folds(text) == folds


@pytest.mark.parametrize("text", ["-1", "", "one", "0,x"])
def test_parse_folds_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="expected 'all' or fold numbers"):
        parse_folds(text)


@pytest.mark.parametrize(
    "error",
    [
        InputError("tiles/a.tif: truncated; remove it"),
        ConfigError("c.toml: unknown key 'x'"),
        FileNotFoundError("runs/x: folder not found"),
        ImportError("the catboost model needs catboost: `pip install catboost`"),
    ],
)
def test_errors_prints_one_line_and_exits_1(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as stopped, errors():
        raise error
    assert stopped.value.exit_code == 1
    out = capsys.readouterr().err
    assert out.strip() == f"error: {error}" and "Traceback" not in out


def test_errors_lets_bugs_keep_their_traceback() -> None:
    with pytest.raises(ZeroDivisionError), errors():
        _ = 1 / 0
    with pytest.raises(ValueError, match="a plain ValueError is a bug"), errors():
        raise ValueError("a plain ValueError is a bug")


def test_interrupt_says_how_to_resume(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as stopped, interrupt():
        raise KeyboardInterrupt
    assert stopped.value.exit_code == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_stage_config_puts_options_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text("[features]\nworkers = 3\n[features.sampling]\nn_random = 10\nseed = 4\n")
    from_file = stage_config(FeatureConfig, "features", path)
    assert (from_file.workers, from_file.sampling.seed, from_file.sampling.n_random) == (3, 4, 10)
    given = stage_config(
        FeatureConfig, "features", path, workers=None, sampling={"seed": 9, "dense": None}
    )
    assert given.workers == 3  # None: not given
    assert (given.sampling.seed, given.sampling.n_random, given.sampling.dense) == (9, 10, False)
    assert stage_config(FeatureConfig, "features", None) == FeatureConfig()
    with pytest.raises(ConfigError, match="command line: workers"):
        stage_config(FeatureConfig, "features", None, workers=0)
