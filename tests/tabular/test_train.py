"""`train_trees` end to end on the tiny shared run, and its refusals."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kelp.data.folds_file import write_folds
from kelp.data.tile import load_tile
from kelp.errors import DeviceError, StaleInputError
from kelp.layout import RunLayout
from kelp.maps import MapStore, sigmoid
from kelp.metrics import MetricAccumulator
from kelp.tabular import devices
from kelp.tabular.config import MODEL_NAMES
from kelp.tabular.train import train_trees
from tests.tabular.conftest import FAST, Run

NATIVE = {
    "lightgbm": "model.txt",
    "xgboost": "model.ubj",
    "catboost": "model.cbm",
    "random_forest": "model.ubj",
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_fold_writes_its_artifacts(trained: Run, name: str) -> None:
    for fold in range(trained.folds.k):
        folder = trained.run / "tabular" / name / f"fold={fold}"
        for file in (NATIVE[name], "model.json", "metrics.json", "importance.png"):
            assert (folder / file).is_file(), folder / file
        with open(folder / "importance.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(trained.manifest["inputs"]["feature_names"])
        assert float(rows[0]["importance"]) >= float(rows[-1]["importance"])
    assert (trained.run / "tabular" / "report.csv").is_file()
    report = json.loads((trained.run / "tabular" / "report.json").read_text())
    assert report == trained.manifest["report"]
    assert report["models"][name]["folds"] == [0, 1, 2]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_train_tile_gets_one_map_from_the_fold_that_held_it_out(
    trained: Run, name: str
) -> None:
    store = MapStore(trained.run / "oof" / name)
    assert store.tile_ids() == sorted(trained.folds.tile_ids)
    manifest = store.manifest()
    assert manifest["kind"] == "logit"
    assert manifest["model"] == name
    assert manifest["complete"]
    assert manifest["folds"] == {t: trained.folds.fold_of(t) for t in trained.folds.tile_ids}
    assert manifest["stack_hash"] == trained.manifest["inputs"]["stack_hash"]
    assert manifest["folds_sha256"] == trained.manifest["inputs"]["folds_sha256"]
    record = trained.catalog.train[0]
    assert store.read(record.tile_id).shape == load_tile(record).shape


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fold_models_never_train_on_their_held_out_tiles(trained: Run, name: str) -> None:
    area_of = dict(zip(trained.folds.tile_ids, trained.folds.aoi_ids))
    for fold in range(trained.folds.k):
        metrics = json.loads(
            (trained.run / "tabular" / name / f"fold={fold}" / "metrics.json").read_text()
        )
        held = set(trained.folds.tiles_in(fold))
        assert set(metrics["held_out"]) == held
        assert set(metrics["held_out_predicted"]) == held
        seen = set(metrics["fit_tiles"]) | set(metrics["stop_tiles"])
        assert seen, "trained on nothing"
        assert not seen & held
        assert not set(metrics["stop_tiles"]) & set(metrics["fit_tiles"])
        assert not set(metrics["stop_areas"]) & {area_of[t] for t in held}
        if name == "random_forest":
            assert metrics["stop_tiles"] == []
            assert metrics["early_stopping"].startswith("off")
        elif metrics["early_stopping"] == "on":
            assert metrics["stop_tiles"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_report_matches_the_maps_on_disk(trained: Run, name: str) -> None:
    store = MapStore(trained.run / "oof" / name)
    accumulator = MetricAccumulator()
    for record in trained.catalog.train:
        # P >= 0.5 on the stored logits, computed as the report and the stacker do
        accumulator.update(sigmoid(store.read(record.tile_id)) >= 0.5, load_tile(record).mask)
    overall = trained.manifest["report"]["models"][name]["overall"]
    assert overall["n_tiles"] == len(trained.catalog.train)
    assert overall["at_0.5"]["tp"] == accumulator.global_counts.tp
    assert overall["at_0.5"]["dice"] == pytest.approx(accumulator.global_counts.dice)
    assert overall["best"]["dice"] >= overall["at_0.5"]["dice"]


def test_rerun_with_the_same_inputs_does_nothing(trained: Run) -> None:
    before = {p: p.stat().st_mtime_ns for p in (trained.run / "oof").rglob("*.npy")}
    manifest = train_trees(FAST, RunLayout.of(trained.run, trained.data))
    assert manifest["trained"] == {}
    assert manifest["report"] == trained.manifest["report"]
    after = {p: p.stat().st_mtime_ns for p in (trained.run / "oof").rglob("*.npy")}
    assert before == after


@pytest.mark.slow
def test_same_seed_same_maps_and_a_changed_config_replaces_stale_maps(
    trained: Run, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained.run / "features", run / "features")
    shutil.copy(trained.run / "folds.csv", run / "folds.csv")
    config = FAST.model_copy(update={"models": ("lightgbm", "catboost")})
    train_trees(config, RunLayout.of(run, trained.data), folds=[1])
    for name in config.models:
        ours, theirs = MapStore(run / "oof" / name), MapStore(trained.run / "oof" / name)
        held = sorted(trained.folds.tiles_in(1))
        assert ours.tile_ids() == held
        assert not ours.manifest()["complete"]
        for tile_id in held:
            np.testing.assert_array_equal(ours.read(tile_id), theirs.read(tile_id))
    changed = config.model_copy(update={"seed": 1})
    manifest = train_trees(changed, RunLayout.of(run, trained.data), folds=[0])
    assert manifest["trained"] == {"0": ["lightgbm", "catboost"]}
    # fold 1's maps came from the old seed: removed, not mixed with the new ones
    assert MapStore(run / "oof" / "lightgbm").tile_ids() == sorted(trained.folds.tiles_in(0))
    assert MapStore(run / "oof" / "lightgbm").manifest()["folds_done"] == [0]


def _no_features(run: Run, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copy(run.run / "folds.csv", tmp_path / "folds.csv")
    return run.data, tmp_path


def _other_folds(run: Run, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(run.run / "features", tmp_path / "features")
    reordered = type(run.folds)(run.folds.tile_ids, run.folds.aoi_ids, (run.folds.folds + 1) % 3)
    write_folds(reordered, tmp_path / "folds.csv")
    return run.data, tmp_path


def _renamed_column(run: Run, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(run.run / "features", tmp_path / "features")
    shutil.copy(run.run / "folds.csv", tmp_path / "folds.csv")
    path = tmp_path / "features" / "manifest.json"
    manifest = json.loads(path.read_text())
    names = manifest["feature_names"]
    names[0], names[1] = names[1], names[0]
    path.write_text(json.dumps(manifest))
    return run.data, tmp_path


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (_no_features, {}, FileNotFoundError, "run `kelp build-features` first"),
        (_other_folds, {}, StaleInputError, "built from another folds file"),
        (_renamed_column, {}, StaleInputError, "other feature names .*rerun `kelp build-f"),
        (lambda r, p: (r.data, r.run), {"folds": [0, 3]}, ValueError, r"\[3\] do not exist"),
    ],
)  # fmt: skip
def test_refusals(
    trained: Run,
    tmp_path: Path,
    make,  # type: ignore[no-untyped-def]
    kwargs: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    data, run = make(trained, tmp_path)
    with pytest.raises(error, match=match):
        train_trees(FAST, RunLayout.of(run, data), **kwargs)  # type: ignore[arg-type]


def test_cuda_without_a_gpu_is_refused_before_training(
    trained: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    data, run = _no_features(trained, tmp_path)
    shutil.copytree(trained.run / "features", run / "features")
    with pytest.raises(DeviceError, match="xgboost cannot train on a GPU here: no NVIDIA GPU"):
        train_trees(
            FAST.model_copy(update={"device": "cuda", "models": ("xgboost",)}),
            RunLayout.of(run, data),
        )
    assert not (run / "tabular").exists()


def test_fold_folders_from_a_larger_k_are_removed(
    trained: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    leftover = run / "tabular" / "lightgbm" / f"fold={trained.folds.k}"
    shutil.copytree(run / "tabular" / "lightgbm" / "fold=0", leftover)
    manifest = train_trees(FAST, RunLayout.of(run, trained.data))
    assert manifest["trained"] == {}  # the current folds are up to date
    assert not leftover.exists()
    assert f"fold {trained.folds.k} does not exist in" in capsys.readouterr().err
