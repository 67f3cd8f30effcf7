"""The `kelp` app: version, help, `python -m kelp`."""

import subprocess
import sys

from typer.testing import CliRunner

from kelp import __version__
from kelp.cli import app

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
