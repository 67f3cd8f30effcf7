"""Optional MLflow logging of a finished run: params, metrics, per-epoch curves, artifacts.

Nothing depends on it: every figure is also in the run's CSV/JSON files. Without a URI the
run is logged to a local file store ``<runs_dir>/mlruns`` (MLflow 3 keeps that backend only
behind ``MLFLOW_ALLOW_FILE_STORE``, which is set here for local paths); any other URI (a
server, ``sqlite:///...`` with full ``mlflow`` installed) is used as given.
"""

import csv
import json
import os
from pathlib import Path
from typing import Any

from kelp.layout import RunLayout
from kelp.pipeline.config import RunConfig

__all__ = ["log_study", "log_to_mlflow"]

_ARTIFACTS = (
    "report.html", "run.json", "config.toml", "config.json", "stacking/comparison.csv",
    "stacking/decision.json", "stacking/sweep.csv", "tabular/report.csv",
)  # fmt: skip


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value)[:500]  # MLflow caps param values
    return out


def _mlflow(config: RunConfig) -> Any:
    """MLflow, pointed at the config's tracking URI and experiment.

    Raises:
        ImportError: MLflow missing; says which ``pip install`` adds it.
    """
    try:
        import mlflow
    except ImportError:
        raise ImportError(
            "MLflow tracking needs mlflow: pip install 'kelp[tracking]' (or mlflow-skinny)"
        ) from None
    uri = config.tracking.uri
    if uri is None:
        store = (config.runs_dir / "mlruns").resolve()
        uri = store.as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(config.tracking.experiment)
    return mlflow


def log_to_mlflow(config: RunConfig, run_dir: str | os.PathLike[str]) -> str:
    """Log a run; returns the MLflow run id.

    Raises:
        ImportError: MLflow missing; says which ``pip install`` adds it.
    """
    mlflow = _mlflow(config)
    run_dir = Path(run_dir)
    with mlflow.start_run(run_name=config.name) as active:
        mlflow.log_params(_flatten(config.model_dump(mode="json")))
        record = json.loads(RunLayout.of(run_dir).run_json.read_text())
        for stage, entry in record.get("stages", {}).items():
            if "seconds" in entry:
                mlflow.log_metric(f"seconds.{stage}", entry["seconds"])
            if "peak_rss_mb" in entry:
                mlflow.log_metric(f"peak_rss_mb.{stage}", entry["peak_rss_mb"])
        stacking = RunLayout.of(run_dir).stacking / "manifest.json"
        if stacking.is_file():
            manifest = json.loads(stacking.read_text())
            for model, c in manifest["comparison"].items():
                safe = model.replace(" ", "_")
                mlflow.log_metric(f"oof_dice_at_0.5.{safe}", c["dice_at_0.5"])
                mlflow.log_metric(f"oof_dice_at_best.{safe}", c["dice_at_best"])
                if c.get("dice_nested") is not None:
                    mlflow.log_metric(f"oof_dice_nested.{safe}", c["dice_nested"])
            mlflow.log_metric("final_oof_dice", manifest["decision"]["dice"])
            mlflow.log_metric("final_oof_dice_in_sample", manifest["decision"]["in_sample"]["dice"])
        for log in sorted(RunLayout.of(run_dir).cnn.glob("fold=*/log.csv")):
            fold = log.parent.name.split("=", 1)[1]
            with open(log, newline="") as f:
                for row in csv.DictReader(f):
                    step = int(row["epoch"])
                    for column in ("train_loss", "val_loss", "val_dice", "lr"):
                        if row.get(column) not in (None, ""):
                            mlflow.log_metric(f"cnn.fold{fold}.{column}", float(row[column]), step)
        for name in _ARTIFACTS:
            path = run_dir / name
            if path.is_file():
                folder = str(Path(name).parent)
                mlflow.log_artifact(str(path), artifact_path=None if folder == "." else folder)
        return str(active.info.run_id)


def log_study(config: RunConfig, study_name: str, summary: dict[str, Any], folder: Path) -> str:
    """Log a `kelp tune` study: one parent run, a child run per finished trial.

    A resumed study logs into the same parent run and adds only the trials not logged yet.

    Returns:
        The parent run's id.

    Raises:
        ImportError: MLflow missing; says which ``pip install`` adds it.
    """
    mlflow = _mlflow(config)
    client = mlflow.tracking.MlflowClient()
    experiment = mlflow.get_experiment_by_name(config.tracking.experiment).experiment_id
    key = f"{config.name}/{study_name}"
    found = client.search_runs([experiment], filter_string=f"tags.kelp_study = '{key}'")
    with mlflow.start_run(
        run_id=found[0].info.run_id if found else None, run_name=f"tune {study_name}"
    ) as parent:
        mlflow.set_tags({"kelp_study": key, "kelp_target": summary["target"]})
        mlflow.log_metric("best_nested_dice", summary["best"]["value"])
        parent_id = parent.info.run_id
        children = client.search_runs(
            [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
        )
        logged = {r.data.tags.get("kelp_trial") for r in children}
        for trial in summary["trials"]:
            if trial["state"] not in ("COMPLETE", "PRUNED") or str(trial["number"]) in logged:
                continue
            with mlflow.start_run(run_name=f"trial {trial['number']}", nested=True):
                mlflow.set_tags({"kelp_trial": str(trial["number"]), "state": trial["state"]})
                mlflow.log_params({k: json.dumps(v) for k, v in trial["params"].items()})
                if trial["value"] is not None:
                    mlflow.log_metric("nested_dice", trial["value"])
                for fold, value in trial["running"].items():
                    mlflow.log_metric("running_dice", value, step=int(fold))
        for name in ("best.toml", "summary.json", "history.png", "importance.png"):
            if (folder / name).is_file():
                mlflow.log_artifact(str(folder / name), artifact_path="tune")
        return str(parent_id)
