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

__all__ = ["log_to_mlflow"]

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


def log_to_mlflow(config: RunConfig, run_dir: str | os.PathLike[str]) -> str:
    """Log a run; returns the MLflow run id.

    Raises:
        ImportError: MLflow missing; says which ``pip install`` adds it.
    """
    try:
        import mlflow
    except ImportError:
        raise ImportError(
            "MLflow tracking needs mlflow: pip install 'kelp[tracking]' (or mlflow-skinny)"
        ) from None
    run_dir = Path(run_dir)
    uri = config.tracking.uri
    if uri is None:
        store = (config.runs_dir / "mlruns").resolve()
        uri = store.as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(config.tracking.experiment)
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
