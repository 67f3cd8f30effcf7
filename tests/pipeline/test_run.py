import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kelp.data.io import read_mask
from kelp.errors import ConfigError, InputError
from kelp.layout import RunLayout
from kelp.pipeline import run as run_module
from kelp.pipeline.config import STAGES, RunConfig, load_run_config
from kelp.pipeline.run import dataset_hash, run_pipeline, select_stages
from tests.pipeline.conftest import write_config

pytestmark = pytest.mark.slow
Runner = Callable[[RunConfig, RunLayout, bool], dict[str, Any]]


def _recorder(calls: list[str], stage: str) -> Runner:
    """A stand-in for a stage's runner: notes the stage in ``calls``, returns no manifest."""

    def run(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
        calls.append(stage)
        return {}

    return run


def test_tiny_run_writes_every_artifact(tiny_run: tuple[Path, dict[str, object]]) -> None:
    config_path, record = tiny_run
    run = Path(str(record["run_dir"]))
    stages = record["stages"]
    assert isinstance(stages, dict)
    assert list(stages) == list(STAGES)
    assert all(s["status"] == "done" for s in stages.values())
    assert all(s["peak_rss_mb"] > 50 for s in stages.values())
    assert stages["trees"]["device"] == {"lightgbm": "cpu", "xgboost": "cpu"}
    for name in ("config.toml", "config.json", "run.json", "folds.csv", "tile_stats.csv",
                 "features/manifest.json", "tabular/report.json", "cnn/manifest.json",
                 "oof/cnn/manifest.json", "oof/lightgbm/manifest.json",
                 "stacking/comparison.csv", "stacking/decision.json", "stacking/grid.png",
                 "predictions/submission.tar", "report.html"):  # fmt: skip
        assert (run / name).is_file(), name
    assert (run / "config.toml").read_text() == config_path.read_text()
    git = record["git"]
    assert isinstance(git, dict)
    assert set(git) == {"commit", "dirty"}
    versions = record["versions"]
    assert isinstance(versions, dict)
    assert versions["numpy"] is not None
    assert record["dataset_hash"] == dataset_hash(run / "data")


def test_predictions_are_valid_masks_for_every_test_tile(
    tiny_run: tuple[Path, dict[str, object]],
) -> None:
    run = Path(str(tiny_run[1]["run_dir"]))
    test_ids = sorted(p.name.removesuffix("_satellite.tif")
                      for p in (run / "data" / "test_satellite").iterdir())  # fmt: skip
    masks = sorted((run / "predictions").glob("*_kelp.tif"))
    assert [m.name.removesuffix("_kelp.tif") for m in masks] == test_ids
    for mask in masks:
        values = read_mask(mask)
        assert values.shape == (64, 64)
        assert set(np.unique(values)) <= {0, 1}
    with tarfile.open(run / "predictions" / "submission.tar") as tar:
        assert sorted(tar.getnames()) == [m.name for m in masks]


def test_second_run_does_nothing(
    tiny_run: tuple[Path, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, record = tiny_run
    called: list[str] = []
    for stage in STAGES:
        monkeypatch.setitem(run_module._RUNNERS, stage, _recorder(called, stage))
    again = run_pipeline(load_run_config(config_path), config_path.read_text())
    assert called == []
    assert again["stages"] == record["stages"]


def test_a_config_change_reruns_that_stage_and_those_after_it(
    tiny_run: tuple[Path, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, _ = tiny_run
    called: list[str] = []
    for stage in STAGES:
        monkeypatch.setitem(run_module._RUNNERS, stage, _recorder(called, stage))
    changed = load_run_config(config_path)
    stacking = changed.stacking.model_copy(update={"seed": 1})
    run_pipeline(changed.model_copy(update={"stacking": stacking}))
    assert called == ["stack", "predict"]
    # the recorded keys now describe the changed config: restore the original ones
    run_pipeline(load_run_config(config_path))
    assert called == ["stack", "predict", "stack", "predict"]


def test_failure_and_interrupt_are_recorded_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_run_config(write_config(tmp_path, tmp_path / "runs"))
    done: list[str] = []

    def boom(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
        raise ValueError("the trees fell over")

    for stage in STAGES:
        monkeypatch.setitem(run_module._RUNNERS, stage, _recorder(done, stage))
    monkeypatch.setitem(run_module._RUNNERS, "trees", boom)
    with pytest.raises(ValueError, match="fell over"):
        run_pipeline(config)
    record = json.loads((config.run_dir / "run.json").read_text())
    assert record["stages"]["features"]["status"] == "done"
    assert record["stages"]["trees"]["status"] == "failed"
    assert "fell over" in record["stages"]["trees"]["error"]

    def interrupt(config: RunConfig, layout: RunLayout, force: bool) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setitem(run_module._RUNNERS, "trees", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config)
    record = json.loads((config.run_dir / "run.json").read_text())
    assert record["stages"]["trees"]["status"] == "interrupted"

    monkeypatch.setitem(run_module._RUNNERS, "trees", _recorder(done, "trees"))
    done.clear()
    run_pipeline(config)
    assert done == ["trees", "cnn", "stack", "predict"]  # resumed at the failed stage


def test_only_from_and_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_run_config(write_config(tmp_path, tmp_path / "runs"))
    done: list[str] = []
    for stage in STAGES:
        monkeypatch.setitem(run_module._RUNNERS, stage, _recorder(done, stage))
    run_pipeline(config, only="folds")
    assert done == ["folds"]
    run_pipeline(config, start="stack")
    assert done == ["folds", "stack", "predict"]
    (config.run_dir / "stacking").mkdir()
    (config.run_dir / "stacking" / "old.json").write_text("{}")
    run_pipeline(config, only="stack", force=True)
    assert done[-1] == "stack"
    assert not (config.run_dir / "stacking").exists()  # force removed the old outputs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"only": "train"}, "unknown stage 'train'"), ({"only": "cnn", "start": "stack"}, "not both")],
)
def test_bad_stage_options(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_stages(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("[cnn]\nepochz = 3\n", "unknown key 'cnn.epochz'; valid keys: channels"),
        ("[folds]\nk = 'five'\n", "folds.k"),
        ("[tabular]\nmodels = ['svm']\n", "tabular.models.0"),
        ("[predict]\non_error = 'ignore'\n", "predict.on_error"),
        ("colour = 'blue'\n", "unknown key 'colour'; valid keys: name, runs_dir"),
        ("[data.synth]\ntile = 3\n", "unknown key 'data.synth.tile'; valid keys: tiles, seed"),
        ("workers = 2\n", r"top-level key 'workers' is now \[features\] workers"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, extra: str, match: str) -> None:
    synth = "" if "[data.synth]" in extra else "\n[data.synth]\ntiles = 4\n"
    text = "name = 'x'\n" + extra + synth
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_run_config(path)


def test_missing_dataset(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"name = 'x'\nruns_dir = '{tmp_path}'\n[data]\npath = '{tmp_path}/nowhere'\n")
    with pytest.raises(InputError, match="nowhere: dataset folder not found"):
        run_pipeline(load_run_config(path))
    assert not (tmp_path / "x" / "run.json").exists()
