"""`predict_cnn`: fold-averaged logits for any tiles, TTA, reruns, channel checks."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kelp.cnn.predict import predict_cnn
from kelp.cnn.train import train_cnn
from kelp.data import open_catalog
from kelp.errors import StaleInputError
from kelp.layout import RunLayout
from kelp.maps import MapStore
from tests.cnn.conftest import CHANNELS, TINY

pytestmark = pytest.mark.usefixtures("conv1x1")
FAST = TINY.model_copy(update={"epochs": 2, "lr": 0.05})


@pytest.fixture
def trained(run_dir: tuple[Path, Path]) -> tuple[Path, Path]:
    data, run = run_dir
    train_cnn(FAST, RunLayout.of(run, data))
    return data, run


def test_fold_average_of_test_tiles(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    manifest = predict_cnn(data, run, device="cpu")
    store = MapStore(run / "test" / "cnn")
    test_ids = [r.tile_id for r in open_catalog(data).test]
    assert store.tile_ids() == test_ids
    assert manifest["kind"] == "logit"
    assert manifest["model"] == "cnn"
    assert manifest["folds_used"] == [0, 1]
    assert manifest["tta"] is False  # as the out-of-fold logits were made
    assert manifest["channels"] == list(CHANNELS)
    singles = []
    for k in (0, 1):
        predict_cnn(data, run, tmp_path / f"f{k}", folds=[k])
        singles.append(MapStore(tmp_path / f"f{k}").read(test_ids[0]))
    np.testing.assert_allclose(store.read(test_ids[0]), (singles[0] + singles[1]) / 2, atol=1e-5)


def test_one_fold_model_reproduces_its_out_of_fold_logits(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = trained
    oof = MapStore(run / "oof" / "cnn")
    fold_of = oof.manifest()["folds"]
    for k in (0, 1):
        predict_cnn(data, run, tmp_path / f"train{k}", folds=[k], tiles="train")
        again = MapStore(tmp_path / f"train{k}")
        for tile_id in (t for t, f in fold_of.items() if f == k):
            np.testing.assert_allclose(again.read(tile_id), oof.read(tile_id), atol=1e-5)


def test_leftover_or_retrained_folds_are_refused(trained: tuple[Path, Path]) -> None:
    data, run = trained
    shutil.copytree(run / "cnn" / "fold=1", run / "cnn" / "fold=2")  # from a k=3 split
    with pytest.raises(StaleInputError, match=r"fold\(s\) \[2\] are left over .*kelp train-cnn"):
        predict_cnn(data, run)
    train_cnn(FAST, RunLayout.of(run, data))  # removes the leftover, trains nothing
    assert not (run / "cnn" / "fold=2").exists()
    predict_cnn(data, run)
    config = run / "cnn" / "fold=0" / "best" / "config.json"
    meta = json.loads(config.read_text())
    meta["training"]["key"] = "another-run"
    config.write_text(json.dumps(meta))
    with pytest.raises(StaleInputError, match="another config or inputs than the out-of-fold"):
        predict_cnn(data, run)


def test_tta_of_equivariant_model_and_any_tiles(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    plain = predict_cnn(data, run, tmp_path / "plain", tta=False, tiles="all", batch_size=3)
    tta = predict_cnn(data, run, tmp_path / "tta", tta=True, tiles="all", batch_size=3)
    assert plain["n_tiles"] == tta["n_tiles"] == 9
    a, b = MapStore(tmp_path / "plain"), MapStore(tmp_path / "tta")
    assert a.tile_ids() == b.tile_ids()
    for tile_id in a.tile_ids():
        np.testing.assert_allclose(a.read(tile_id), b.read(tile_id), atol=1e-2)


def test_rerun_skips_written_tiles(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = trained
    predict_cnn(data, run, tiles="all")
    capsys.readouterr()
    predict_cnn(data, run, tiles="all")
    assert "9 tile(s) already predicted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"channels": ("nir", "swir")}, StaleInputError, r"trained on channels \['nir'"),
        ({"folds": [3]}, FileNotFoundError, r"fold\(s\) \[3\] have no checkpoint"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"tiles": "val"}, ValueError, "tiles must be 'test', 'train' or 'all'"),
    ],
)
def test_bad_input(
    trained: tuple[Path, Path], kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    data, run = trained
    with pytest.raises(error, match=match):
        predict_cnn(data, run, **kwargs)  # type: ignore[arg-type]


def test_untrained_run(run_dir: tuple[Path, Path]) -> None:
    data, run = run_dir
    with pytest.raises(FileNotFoundError, match="no finished CNN fold .* run `kelp train-cnn"):
        predict_cnn(data, run)
