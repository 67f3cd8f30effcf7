"""`kelp predict` feeds the meta-model what it was fit on, and refuses what changed since."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kelp.data.catalog import open_catalog
from kelp.data.folds_file import read_folds
from kelp.data.io import read_image, read_mask, write_image
from kelp.data.tile import load_tile
from kelp.errors import StaleInputError
from kelp.layout import RunLayout
from kelp.pipeline.config import load_run_config
from kelp.pipeline.run import run_pipeline
from kelp.stacking.config import PredictConfig
from kelp.stacking.inputs import open_base_maps
from kelp.stacking.predict import BaseEnsemble, predict
from tests.pipeline.conftest import write_config

pytestmark = pytest.mark.slow
TinyRun = tuple[Path, dict[str, object]]
PERMUTED = ("dem", "blue", "qa", "swir", "green", "red", "nir")


def _run(tiny_run: TinyRun) -> Path:
    return Path(str(tiny_run[1]["run_dir"]))


def _stacking(run: Path) -> dict[str, object]:
    manifest: dict[str, object] = json.loads((run / "stacking" / "manifest.json").read_text())
    return manifest


def test_predict_inputs_of_a_train_tile_equal_its_oof_maps(tiny_run: TinyRun) -> None:
    run = _run(tiny_run)
    data = run / "data"
    folds = read_folds(run / "folds.csv", open_catalog(data))
    oof = open_base_maps(RunLayout.of(run), folds)
    records = {r.tile_id: r for r in open_catalog(data).train}
    for k in range(folds.k):
        # only the fold model that held these tiles out: the path `kelp predict` takes
        ensemble = BaseEnsemble(run, _stacking(run), device="cpu", folds=[k])
        assert ensemble.names == oof.names == ("cnn", "lightgbm", "xgboost")
        for tile_id in folds.tiles_in(k)[:3]:
            tile = load_tile(records[tile_id], ensemble.band_order)
            np.testing.assert_allclose(ensemble.logits(tile), oof.logits(tile_id), atol=1e-5)


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("data"))
    return copy


def _edit(path: Path, **changes: object) -> None:
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("folds", r"folds.csv changed after `kelp stack`: retrain"),
        ("features", r"features in .* changed after `kelp stack`"),
        ("base_model", r"the lightgbm model changed after `kelp stack`.*rerun `kelp stack`"),
        ("leftover_tree", r"fold\(s\) \[3\] are left over .*rerun `kelp train-trees"),
        ("leftover_cnn", r"fold\(s\) \[3\] are left over .*rerun `kelp train-cnn"),
    ],
)
def test_predict_refuses_a_run_changed_after_stack(
    tiny_run: TinyRun, tmp_path: Path, change: str, match: str
) -> None:
    run = _copy(_run(tiny_run), tmp_path)
    data = _run(tiny_run) / "data"
    if change == "folds":
        with open(run / "folds.csv", "a") as f:
            f.write("\n")
    elif change == "features":
        _edit(run / "stacking" / "manifest.json", stack_hash="0123456789abcdef")
    elif change == "base_model":
        _edit(run / "oof" / "lightgbm" / "manifest.json", key="retrained")
    elif change == "leftover_tree":
        shutil.copytree(run / "tabular" / "xgboost" / "fold=0", run / "tabular/xgboost/fold=3")
    elif change == "leftover_cnn":
        shutil.copytree(run / "cnn" / "fold=0", run / "cnn" / "fold=3")
    before = sorted(p.name for p in (run / "predictions").iterdir())
    with pytest.raises(StaleInputError, match=match):
        predict(PredictConfig(data=data), RunLayout.of(run))
    assert sorted(p.name for p in (run / "predictions").iterdir()) == before  # nothing lost


def test_permuted_band_order_gives_the_same_masks(tiny_run: TinyRun, tmp_path: Path) -> None:
    run = _run(tiny_run)
    data = tmp_path / "permuted"
    shutil.copytree(run / "data", data, ignore=shutil.ignore_patterns("*_satellite.tif"))
    (data / "metadata.csv").unlink()  # its sizes and hashes are the canonical files'
    for path in (run / "data").glob("*_satellite/*_satellite.tif"):
        image, transform = read_image(path)
        target = data / path.parent.name / path.name
        write_image(target, image, transform, band_order=PERMUTED)
        assert not np.array_equal(read_image(target)[0], image)  # the file is permuted
        assert np.array_equal(read_image(target, PERMUTED)[0], image)
    extra = f'\n[data]\npath = "{data}"\nband_order = {json.dumps(list(PERMUTED))}\n'
    config = write_config(tmp_path, tmp_path / "runs", extra.replace("[data.synth]", ""))
    text = config.read_text()
    start = text.index("[data.synth]")
    end = text.index("[folds]")
    config.write_text(text[:start] + text[end:])
    record = run_pipeline(load_run_config(config), config.read_text())
    other = Path(str(record["run_dir"]))
    masks = sorted((run / "predictions").glob("*_kelp.tif"))
    assert masks
    for path in masks:
        assert np.array_equal(read_mask(path), read_mask(other / "predictions" / path.name))
