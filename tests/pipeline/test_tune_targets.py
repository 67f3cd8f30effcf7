"""`kelp tune --target cnn|stack` on a copy of the tiny finished run: trials train and score
in scratch folders from the run's folds, features and out-of-fold maps, never its own."""

import shutil
from pathlib import Path

import pytest

from kelp.tune.study import TuneRequest, tune

pytestmark = pytest.mark.slow
TinyRun = tuple[Path, dict[str, object]]


def _copy(tiny_run: TinyRun, tmp_path: Path, extra: str) -> Path:
    config, record = tiny_run
    runs = Path(str(record["run_dir"])).parent
    shutil.copytree(runs, tmp_path / "runs", symlinks=True)
    text = config.read_text().replace(str(runs), str(tmp_path / "runs"))
    path = tmp_path / "tiny.toml"
    path.write_text(text + extra)
    return path


def _snapshot(run: Path, parts: tuple[str, ...]) -> dict[str, int]:
    return {
        str(p.relative_to(run)): p.stat().st_mtime_ns
        for part in parts
        for p in (run / part).rglob("*")
        if p.is_file()
    }


def test_tune_the_stacker_on_the_runs_out_of_fold_maps(tiny_run: TinyRun, tmp_path: Path) -> None:
    config = _copy(tiny_run, tmp_path, '[tune.stack]\nmeta = {choices = ["average", "logistic"]}\n')
    run = tmp_path / "runs" / "tiny"
    before = _snapshot(run, ("oof", "stacking", "tabular", "cnn"))
    summary = tune(config, TuneRequest("stack", trials=2))
    assert summary["counts"]["complete"] == 2
    assert {t["params"]["meta"] for t in summary["trials"]} <= {"average", "logistic"}
    assert sorted(summary["best"]["per_fold"]) == ["0", "1", "2"]
    assert 0 <= summary["best"]["value"] <= 1
    assert _snapshot(run, ("oof", "stacking", "tabular", "cnn")) == before  # only read
    assert "[stacking]" in (run / "tune" / "stack" / "best.toml").read_text()


def test_tune_the_cnn_fold_by_fold(tiny_run: TinyRun, tmp_path: Path) -> None:
    extra = (
        '[tune.cnn]\nepochs = "off"\nencoder = "off"\nloss = "off"\n'
        "lr = {low = 1e-3, high = 3e-3, log = true}\n"
    )
    config = _copy(tiny_run, tmp_path, extra)
    run = tmp_path / "runs" / "tiny"
    before = _snapshot(run, ("oof", "cnn"))
    summary = tune(config, TuneRequest("cnn", trials=1))
    [trial] = summary["trials"]
    assert trial["state"] == "COMPLETE" and sorted(trial["running"]) == ["0", "1", "2"]
    assert set(trial["params"]) == {"lr", "weight_decay"}
    assert _snapshot(run, ("oof", "cnn")) == before
