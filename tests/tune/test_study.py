"""`kelp tune` on a tiny run: resumes, prunes, survives a crash, writes a config that
reproduces its best trial, and refuses bad input in one line before writing anything."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from kelp.cli import app
from kelp.errors import ConfigError, InputError
from kelp.pipeline.config import load_run_config
from kelp.pipeline.run import run_pipeline
from kelp.tune import objective, study
from kelp.tune.study import TuneRequest, open_study, tune
from tests.tune.conftest import write_config

pytestmark = pytest.mark.slow
TREES = TuneRequest("trees", "lightgbm", trials=2)


def _config(folder: Path, extra: str = "") -> Path:
    return write_config(folder, folder / "runs", extra)


def _study(config: Path, request: TuneRequest = TREES) -> optuna.Study:
    cfg = load_run_config(config)
    return open_study(cfg, request, cfg.run_dir / "tune" / study.study_name(cfg, request))


def _states(s: optuna.Study) -> list[str]:
    return [t.state.name for t in s.trials]


def test_tune_writes_a_study_and_its_outputs_and_never_touches_the_run(tiny: Path) -> None:
    config = _config(tiny)
    run = tiny / "runs" / "tiny"
    features = (run / "features" / "manifest.json").read_bytes()
    summary = tune(config, TREES)
    folder = run / "tune" / "trees-lightgbm"
    assert summary["counts"]["complete"] == 2 and len(summary["trials"]) == 2
    assert {p.name for p in folder.iterdir()} == {
        "journal.log",
        "best.toml",
        "summary.json",
        "trials.csv",
        "history.png",
        "importance.png",
    }  # fmt: skip  (scratch folders removed)
    assert not (run / "tabular").exists() and not (run / "oof").exists()
    assert (run / "features" / "manifest.json").read_bytes() == features
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in summary["trials"])
    assert sorted(best["per_fold"]) == ["0", "1", "2"]
    assert sorted(summary["trials"][0]["running"]) == ["0", "1", "2"]  # reported after each fold
    text = (folder / "best.toml").read_text()
    assert "[tabular.params.lightgbm]" in text and f"{best['value']:.6f}" in text
    assert "Tuning: trees-lightgbm" in (run / "report.html").read_text()


def test_the_written_config_reproduces_the_best_trial(tiny: Path) -> None:
    tuned = tiny / "tuned.toml"
    summary = tune(_config(tiny), TuneRequest("trees", "lightgbm", trials=2, write_config=tuned))
    config = load_run_config(tuned)
    assert config.name == "tiny-tuned"
    for stage in ("folds", "features", "trees"):
        run_pipeline(config, only=stage)  # type: ignore[arg-type]
    report = json.loads((config.run_dir / "tabular" / "report.json").read_text())
    assert report["models"]["lightgbm"]["nested"]["dice"] == summary["best"]["value"]
    params = summary["best"]["params"]
    assert config.tabular.params["lightgbm"]["num_leaves"] == params["num_leaves"]


def test_the_study_resumes_after_an_interruption(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tiny)
    tune(config, TREES)
    run_trial = objective.run_trial

    def interrupted(setup: Any, number: int, *args: Any) -> Any:
        if number == 2:
            raise KeyboardInterrupt
        return run_trial(setup, number, *args)

    monkeypatch.setattr(study, "run_trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune(config, TuneRequest("trees", "lightgbm", trials=4))
    assert _states(_study(config)) == ["COMPLETE", "COMPLETE", "FAIL"]
    monkeypatch.setattr(study, "run_trial", run_trial)
    summary = tune(config, TuneRequest("trees", "lightgbm", trials=4))
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE"] * 2 + ["FAIL"] + ["COMPLETE"] * 2
    params = [json.dumps(t["params"], sort_keys=True) for t in summary["trials"]]
    assert len(set(params)) == 5  # the resumed study drew new points
    again = tune(config, TuneRequest("trees", "lightgbm", trials=4))  # budget met: no trial
    assert len(again["trials"]) == 5


def test_a_trial_left_running_by_a_dead_process_is_marked_failed(tiny: Path) -> None:
    config = _config(tiny)
    s = _study(config)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    orphan = s.ask()
    orphan.set_user_attr("pid", int(dead.stdout))
    orphan.set_user_attr("host", study._HOST)
    alive = s.ask()  # another live process's trial (this one): left alone
    alive.set_user_attr("pid", 1)
    alive.set_user_attr("host", study._HOST)
    assert _states(_study(config)) == ["FAIL", "RUNNING"]


@pytest.mark.filterwarnings("ignore:Fixed parameter min_data_in_leaf")
def test_the_pruner_stops_a_deliberately_bad_trial(tiny: Path) -> None:
    config = _config(tiny)
    s = _study(config)
    good = {"learning_rate": 0.2, "num_leaves": 31, "min_data_in_leaf": 20,
            "feature_fraction": 0.9, "bagging_fraction": 0.9, "lambda_l2": 1.0,
            "sample_weight": False}  # fmt: skip
    for _ in range(3):
        s.enqueue_trial(good)
    # leaves of 5000 rows on a table of ~7000: one split at most, no kelp found
    s.enqueue_trial({**good, "min_data_in_leaf": 5000, "learning_rate": 0.02})
    text = config.read_text().replace("startup_trials = 2", "startup_trials = 2\nwarmup_folds = 0")
    config.write_text(text)
    summary = tune(config, TuneRequest("trees", "lightgbm", trials=4))
    states = [t["state"] for t in summary["trials"]]
    assert states == ["COMPLETE"] * 3 + ["PRUNED"]
    assert list(summary["trials"][3]["running"]) == ["0"]  # stopped after its first fold


def test_a_crashing_trial_is_recorded_failed_and_the_study_goes_on(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_trial = objective.run_trial

    def crash_once(setup: Any, number: int, *args: Any) -> Any:
        if number == 0:
            raise RuntimeError("out of memory in fold 1")
        return run_trial(setup, number, *args)

    monkeypatch.setattr(study, "run_trial", crash_once)
    summary = tune(_config(tiny), TuneRequest("trees", "lightgbm", trials=2))
    assert [t["state"] for t in summary["trials"]] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "trial 0 failed (RuntimeError: out of memory in fold 1); going on" in (
        capsys.readouterr().err.replace("\n", "")
    )


def test_no_finished_trial_is_an_error(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(study, "run_trial", crash)
    with pytest.raises(InputError, match="no trial finished"):
        tune(_config(tiny), TuneRequest("trees", "lightgbm", trials=2))
    assert _states(_study(_config(tiny))) == ["FAIL"] * study._FailureStop.LIMIT


def test_a_trial_that_changes_the_sampling_builds_its_own_table(tiny: Path) -> None:
    config = _config(tiny, "")
    text = config.read_text().replace('n_random = "off"', "n_random = {low = 50, high = 60}")
    config.write_text(text.replace("[tune]\n", "[tune]\nkeep_trials = true\n"))
    tune(config, TuneRequest("trees", "lightgbm", trials=1))
    trial = tiny / "runs" / "tiny" / "tune" / "trees-lightgbm" / "trial-0000"
    manifest = json.loads((trial / "features" / "manifest.json").read_text())
    assert 50 <= manifest["config"]["sampling"]["n_random"] <= 60
    assert (trial / "tabular" / "lightgbm" / "fold=2" / "metrics.json").is_file()  # kept
    assert not (tiny / "runs" / "tiny" / "tabular").exists()


def test_two_processes_share_one_study(tiny: Path) -> None:
    summary = tune(_config(tiny), TuneRequest("trees", "lightgbm", trials=3, jobs=2))
    assert summary["counts"]["complete"] >= 3
    s = _study(_config(tiny))
    assert len({t.user_attrs["pid"] for t in s.trials}) == 2


@pytest.mark.parametrize(
    ("storage", "request_", "message"),
    [
        (
            "sqlite:////no/such/folder/tune.db",
            TREES,
            r"\[tune\] storage 'sqlite:////no/such/"
            r"folder/tune.db' cannot be opened \(OperationalError",
        ),
        ("nosuchdb://host/x", TREES, "cannot be opened"),
        (None, TuneRequest("trees", "lightgbm"), "give a budget: --trials N or --timeout"),
        (
            None,
            TuneRequest("trees", "catboost", trials=1),
            "unknown tree model of "
            r"\[tabular\] models 'catboost'",
        ),
        (None, TuneRequest("cnn", "lightgbm", trials=1), "--model is for --target trees"),
        (None, TuneRequest("trees", "lightgbm", trials=0), "must be at least 1"),
        (
            "bad space",
            TREES,
            r"unknown parameter of lightgbm in \[tune.trees.lightgbm\] "
            "'num_leafs'; did you mean 'num_leaves'",
        ),
    ],
)
def test_bad_requests_fail_in_one_line_before_anything_is_written(
    tiny: Path, storage: str | None, request_: TuneRequest, message: str
) -> None:
    extra = f'storage = "{storage}"\n' if storage and "://" in storage else ""
    space = (
        "[tune.trees.lightgbm]\nnum_leafs = {low = 2, high = 9}\n" if storage == "bad space" else ""
    )
    config = _config(tiny, space)
    config.write_text(config.read_text().replace("[tune]\n", "[tune]\n" + extra))
    with pytest.raises(ConfigError, match=message) as error:
        tune(config, request_)
    assert "\n" not in str(error.value)
    assert not (tiny / "runs" / "tiny" / "tune").exists()


def test_a_study_of_another_target_is_refused(tiny: Path) -> None:
    config = _config(tiny)
    config.write_text(config.read_text().replace("[tune]\n", '[tune]\nstudy = "mine"\n'))
    _study(config)
    with pytest.raises(ConfigError, match="study 'mine' tunes trees lightgbm; give another"):
        tune(config, TuneRequest("trees", "xgboost", trials=1))


def test_optuna_missing_names_the_extra(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'kelp\[tune\]'"):
        tune(_config(tiny), TREES)


def test_the_command(tiny: Path) -> None:
    config = _config(tiny)
    result = CliRunner().invoke(app, ["tune", str(config), "--target", "trees", "--trials", "1"])
    assert result.exit_code == 0, result.output
    assert "study trees-lightgbm: 1 complete; best trial 0: nested OOF Dice" in result.output
    bad = CliRunner().invoke(app, ["tune", str(config), "--target", "trees"])
    assert bad.exit_code == 1 and "error: give a budget" in bad.output


def test_mlflow_gets_a_run_per_trial_once(tiny: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    config = _config(tiny)
    tune(config, TREES, mlflow=True)
    summary = tune(config, TuneRequest("trees", "lightgbm", trials=3), mlflow=True)
    client = mlflow.tracking.MlflowClient()
    [parent] = client.search_runs(
        [mlflow.get_experiment_by_name("kelp").experiment_id],
        filter_string="tags.kelp_study = 'tiny/trees-lightgbm'",
    )
    assert parent.info.run_id == summary["mlflow_run_id"]
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(r.data.tags["kelp_trial"] for r in children) == ["0", "1", "2"]
    best = summary["best"]["value"]
    assert parent.data.metrics["best_nested_dice"] == pytest.approx(best)


def test_two_loops_on_a_local_cluster_share_one_study(tiny: Path) -> None:
    from kelp.cluster import ClusterConfig, connect

    config = _config(tiny)
    with connect(ClusterConfig(address="local:2", threads_per_worker=1)):
        summary = tune(config, TuneRequest("trees", "lightgbm", trials=3, jobs=2))
    assert summary["counts"]["complete"] >= 3
    trials = _study(config).trials
    # each loop ran on a worker process of its own, not here
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    assert summary["best"]["value"] == max(t["value"] for t in summary["trials"])
