from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kelp.cli import app
from kelp.features.stack import channel_names
from kelp.pipeline import run as run_module
from kelp.pipeline.config import load_run_config
from tests.pipeline.conftest import write_config

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo", "gpu", "lean"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_run_config(ROOT / "configs" / f"{name}.toml")
    assert config.name in ("demo", "kelp-wanted-gpu", "lean")


def test_lean_config_is_the_lean_table() -> None:
    features = load_run_config(ROOT / "configs" / "lean.toml").features
    names = channel_names(features)
    assert names[:5] == ["swir", "nir", "red", "green", "blue"]
    assert names[-2:] == ["qa", "DEMWM"]
    assert len(names) == 23  # 5 bands, the 16 indices of the 2nd-place write-up, QA, DEMWM
    assert "NDWI" not in names and not features.filters.channels and not features.offsets
    assert features.water_only
    assert (features.sampling.buffer, features.sampling.n_random) == (5, 1000)


@pytest.mark.slow
def test_run_twice_second_does_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "runs")
    result = runner.invoke(app, ["-q", "run", str(config)])
    assert result.exit_code == 0, result.output
    assert "stack-logistic" in result.output
    assert "report:" in result.output
    assert "final masks (post-processing chosen on out-of-fold maps): nested global Dice" in (
        " ".join(result.output.split())
    )
    result = runner.invoke(app, ["-q", "run", str(config)])
    assert result.exit_code == 0, result.output
    for stage in ("folds", "features", "trees", "cnn", "stack", "predict"):
        assert f"{stage}: up to date" in result.output


def test_run_bad_config_and_interrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[cnn]\nepochs = -1\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 1
    assert "cnn.epochs" in result.output
    result = runner.invoke(app, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1
    assert "config file not found" in result.output

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "run_pipeline", interrupted)
    result = runner.invoke(app, ["run", str(write_config(tmp_path, tmp_path / "runs"))])
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.output


def test_demo_runs_the_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake(config: Any, text: str | None = None, **kwargs: Any) -> dict[str, Any]:
        seen["config"], seen["text"] = config, text
        return {"run_dir": str(config.run_dir), "seconds": 1.0, "report": "r.html"}

    monkeypatch.setattr(run_module, "run_pipeline", fake)
    result = runner.invoke(app, ["demo", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.run_dir == tmp_path / "demo"
    assert config.data.synth is not None
    assert seen["text"] == (ROOT / "configs" / "demo.toml").read_text()
