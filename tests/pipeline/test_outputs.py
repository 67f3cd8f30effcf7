"""What a finished run offers: predict on new tiles, report.html, MLflow, runs and compare."""

import base64
import json
import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kelp.cli import app
from kelp.data.io import read_mask, write_image
from kelp.errors import DatasetError, InputError
from kelp.layout import RunLayout
from kelp.pipeline.config import load_run_config
from kelp.pipeline.report import write_report
from kelp.pipeline.runs import compare_runs, list_runs
from kelp.pipeline.tracking import log_to_mlflow
from kelp.stacking.config import PredictConfig
from kelp.stacking.predict import predict
from tests.conftest import make_dem, make_image

pytestmark = pytest.mark.slow
TinyRun = tuple[Path, dict[str, object]]
runner = CliRunner()


def _run(tiny_run: TinyRun) -> Path:
    return Path(str(tiny_run[1]["run_dir"]))


def _predict(data: Path, run: Path, out: Path, **options: Any) -> dict[str, Any]:
    """`kelp predict` of the tiles in ``data`` with the models of ``run``, masks to ``out``."""
    return predict(PredictConfig(data=data, out=out, **options), RunLayout.of(run))


def _test_folder(run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "new_tiles"
    folder.mkdir()
    for path in sorted((run / "data" / "test_satellite").iterdir())[:2]:
        shutil.copy(path, folder / path.name)
    rng = np.random.default_rng(0)
    write_image(folder / "BIG00001_satellite.tif", make_image(rng, make_dem(rng, 80)[:, :72]))
    return folder


def test_predict_any_tiles_any_size(tiny_run: TinyRun, tmp_path: Path) -> None:
    run = _run(tiny_run)
    folder = _test_folder(run, tmp_path)
    manifest = _predict(folder, run, tmp_path / "out")
    assert manifest["n_tiles"] == 3
    big = read_mask(tmp_path / "out" / "BIG00001_kelp.tif")
    assert big.shape == (80, 72)  # a tile of another size gets a mask of its own size
    before = (tmp_path / "out" / "BIG00001_kelp.tif").stat().st_mtime_ns
    _predict(folder, run, tmp_path / "out")  # resumes: nothing to redo
    assert (tmp_path / "out" / "BIG00001_kelp.tif").stat().st_mtime_ns == before


def test_predict_corrupt_tile(tiny_run: TinyRun, tmp_path: Path) -> None:
    run = _run(tiny_run)
    folder = _test_folder(run, tmp_path)
    (folder / "BAD00001_satellite.tif").write_bytes(b"not a tiff")
    with pytest.raises(DatasetError, match="BAD00001_satellite.tif"):
        _predict(folder, run, tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out").glob("*_kelp.tif"))
    assert "BIG00001_kelp.tif" not in written  # sorted after BAD: never reached
    manifest = _predict(folder, run, tmp_path / "out", on_error="skip")
    assert [s["tile_id"] for s in manifest["skipped"]] == ["BAD00001"]
    assert manifest["n_tiles"] == 3


def test_predict_without_stacking(tiny_run: TinyRun, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `kelp stack` first"):
        _predict(_run(tiny_run) / "data", tmp_path, tmp_path / "out")


def test_predict_without_test_tiles(
    tiny_run: TinyRun, tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    train_only = tiny_dataset(n_areas=1, dates=1, n_test=0)
    with pytest.raises(InputError, match="no test tiles"):  # a folder given to predict
        _predict(train_only, _run(tiny_run), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # the run's own dataset without test tiles: nothing to do, not an error
    skipped = predict(PredictConfig(), RunLayout.of(tmp_path / "run", train_only))
    assert skipped == {"skipped": "no test tiles"}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("href", "src"):
            if tag != "img" and values.get(key):
                self.links.append(values[key] or "")
        if tag not in ("img", "meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()


def test_report_is_self_contained_html(tiny_run: TinyRun) -> None:
    run = _run(tiny_run)
    page = write_report(run).read_text()
    assert page.startswith("<!DOCTYPE html>")
    parser = _Collect()
    parser.feed(page)
    assert parser.open == []  # every element closed, properly nested
    assert parser.links == []  # nothing fetched from outside
    assert len(parser.images) >= 1 + 3 + 2 + 1  # sweep, 3 CNN curves, 2 importances, grid
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("stack-logistic", "lightgbm", "cnn", "Final decision", "Threshold sweep"):
        assert text in page
    decision = json.loads((run / "stacking" / "decision.json").read_text())
    assert f"nested global Dice {decision['dice']:.4f}" in page  # the headline is nested


def test_mlflow_local_store(tiny_run: TinyRun, tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    config = load_run_config(tiny_run[0])
    uri = (tmp_path / "mlruns").as_uri()
    config = config.model_copy(update={"tracking": config.tracking.model_copy(update={"uri": uri})})
    run_id = log_to_mlflow(config, _run(tiny_run))
    client = mlflow.tracking.MlflowClient(uri)
    logged = client.get_run(run_id)
    assert logged.data.params["folds.k"] == "3"
    assert logged.data.metrics["final_oof_dice"] == pytest.approx(
        json.loads((_run(tiny_run) / "stacking" / "decision.json").read_text())["dice"]
    )
    history = client.get_metric_history(run_id, "cnn.fold0.val_dice")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "run.json", "stacking"} <= artifacts


def test_runs_and_compare(tiny_run: TinyRun, tmp_path: Path) -> None:
    run = _run(tiny_run)
    copy = tmp_path / "runs" / "copy"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["cnn"]["epochs"] = 5
    (copy / "config.json").write_text(json.dumps(config))
    runs = list_runs(tmp_path / "runs")
    assert [r["name"] for r in runs] == ["copy"]
    assert runs[0]["status"] == "done"
    assert runs[0]["final_dice"] is not None
    assert runs[0]["best_base"][0] in ("cnn", "lightgbm", "xgboost")  # a base model, not a fusion
    record = json.loads((run / "run.json").read_text())
    assert runs[0]["seconds"] == pytest.approx(sum(e["seconds"] for e in record["stages"].values()))
    diff = compare_runs(run, copy)
    assert diff["config"] == [("cnn.epochs", 2, 5)]
    final = next(m for m in diff["metrics"] if m[0] == "final nested Dice")
    assert final[3] == 0
    decision = json.loads((run / "stacking" / "decision.json").read_text())
    assert final[1] == decision["dice"] == decision["nested"]["dice"]
    result = runner.invoke(app, ["compare", str(run), str(copy)])
    assert result.exit_code == 0, result.output
    assert "cnn.epochs" in result.output
    result = runner.invoke(app, ["runs", str(tmp_path / "runs")])
    assert result.exit_code == 0
    assert "copy" in result.output
    result = runner.invoke(app, ["compare", str(run), str(tmp_path)])
    assert result.exit_code == 1
    assert "not a run folder" in result.output
