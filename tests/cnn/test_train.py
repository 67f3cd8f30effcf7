"""`train_cnn`: folds, out-of-fold coverage, reruns, resuming, and bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from kelp.cnn import history
from kelp.cnn import train as train_module
from kelp.cnn.train import train_cnn
from kelp.data.io import read_mask, write_mask
from kelp.errors import ConfigError, DeviceError, InputError, StaleInputError
from kelp.features.build import build_features
from kelp.layout import RunLayout
from kelp.maps import MapStore
from tests.cnn.conftest import CHANNELS, FEATURES, TINY

pytestmark = pytest.mark.usefixtures("conv1x1")
FAST = TINY.model_copy(update={"epochs": 3, "lr": 0.05})


def _fold_of(run: Path) -> dict[str, int]:
    return dict(pl.read_csv(run / "folds.csv").select("tile_id", "fold").iter_rows())


def test_oof_maps_cover_each_train_tile_once(run_dir: tuple[Path, Path]) -> None:
    data, run = run_dir
    fold_of = _fold_of(run)
    first = train_cnn(FAST, RunLayout.of(run, data), folds=[0])
    store = MapStore(run / "oof" / "cnn")
    assert store.tile_ids() == sorted(t for t, f in fold_of.items() if f == 0)
    assert first["oof"]["tiles"] == len(store.tile_ids())

    manifest = train_cnn(FAST, RunLayout.of(run, data), folds=[1])
    assert store.tile_ids() == sorted(fold_of)  # every train tile, test tiles never
    oof = store.manifest()
    assert oof["folds"] == fold_of  # each tile once, by the fold that held it out
    assert oof["kind"] == "logit"
    assert oof["model"] == "cnn"
    assert oof["channels"] == list(CHANNELS)
    features = json.loads((run / "features" / "manifest.json").read_text())
    assert oof["stack_hash"] == features["stack_hash"]
    assert oof["folds_sha256"] == features["folds_sha256"]
    assert set(oof["metrics"]) >= {"dice", "iou", "precision", "recall", "mean_tile_dice"}
    for tile_id in fold_of:
        logits = store.read(tile_id)
        assert logits.shape == read_mask(data / "train_kelp" / f"{tile_id}_kelp.tif").shape
        assert np.isfinite(logits).all()

    assert set(manifest["folds"]) == {"0", "1"}
    assert manifest["oof"]["metrics"]["n_tiles"] == len(fold_of)
    for k in (0, 1):
        fold_dir = run / "cnn" / f"fold={k}"
        log = pl.read_csv(fold_dir / "log.csv")
        assert log.columns == list(history.COLUMNS)
        assert log["epoch"].to_list() == [1, 2, 3]
        assert (fold_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for name in ("best", "last"):
            assert (fold_dir / name / "config.json").is_file()
            assert (fold_dir / name / "model.safetensors").is_file()
        assert (fold_dir / "last" / "state.pt").is_file()
    assert (run / "cnn" / "manifest.json").is_file()


def test_rerun_does_nothing_and_a_new_config_retrains(
    run_dir: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = run_dir
    train_cnn(FAST, RunLayout.of(run, data))
    oof = run / "oof" / "cnn"
    stamps = {p.name: p.stat().st_mtime_ns for p in oof.glob("*.npy")}
    capsys.readouterr()
    train_cnn(FAST, RunLayout.of(run, data))
    assert capsys.readouterr().err.count("already trained with this config") == 2
    assert {p.name: p.stat().st_mtime_ns for p in oof.glob("*.npy")} == stamps

    changed = FAST.model_copy(update={"lr": 0.02})
    train_cnn(changed, RunLayout.of(run, data), folds=[0])
    err = capsys.readouterr().err
    assert "removing" in err and "another config" in err  # stale OOF maps are dropped
    assert MapStore(oof).manifest()["folds"] == {t: 0 for t, f in _fold_of(run).items() if f == 0}


def test_resume_after_interruption_matches_an_uninterrupted_run(
    run_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = run_dir
    other = run.parent / "other"
    shutil.copytree(run, other)
    train_cnn(FAST, RunLayout.of(other, data), folds=[0])

    calls = []
    real_plot = history.plot_curves

    def interrupt(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_plot(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("kelp.cnn.train.plot_curves", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_cnn(FAST, RunLayout.of(run, data), folds=[0])
    assert not (run / "cnn" / "fold=0" / "fold.json").exists()
    monkeypatch.setattr("kelp.cnn.train.plot_curves", real_plot)
    train_cnn(FAST, RunLayout.of(run, data), folds=[0])
    log = pl.read_csv(run / "cnn" / "fold=0" / "log.csv")
    assert log["epoch"].to_list() == [1, 2, 3]
    for name in ("best", "last"):
        a = load_file(run / "cnn" / "fold=0" / name / "model.safetensors")
        b = load_file(other / "cnn" / "fold=0" / name / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    reference = pl.read_csv(other / "cnn" / "fold=0" / "log.csv")
    assert log.drop("seconds").equals(reference.drop("seconds"))


def test_best_epoch_is_chosen_on_inner_areas_never_on_the_held_out_fold(
    run_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = run_dir
    folds = pl.read_csv(run / "folds.csv")
    fold_of = dict(folds.select("tile_id", "fold").iter_rows())
    area_of = dict(folds.select("tile_id", "aoi_id").iter_rows())
    scored: list[set[str]] = []
    real_validate = train_module.validate

    def spy(model: torch.nn.Module, loader: DataLoader, *args: object) -> object:
        scored.append({r.tile_id for r in loader.dataset.records})  # type: ignore[attr-defined]
        return real_validate(model, loader, *args)  # type: ignore[arg-type]

    monkeypatch.setattr("kelp.cnn.train.validate", spy)
    manifest = train_cnn(FAST, RunLayout.of(run, data))
    assert len(scored) == 2 * FAST.epochs  # one validation per epoch and fold
    for k in (0, 1):
        fold = manifest["folds"][str(k)]
        held_out = {t for t, f in fold_of.items() if f == k}
        for tiles in scored[k * FAST.epochs : (k + 1) * FAST.epochs]:
            assert tiles == set(fold["val_tile_ids"])
            assert tiles and tiles.isdisjoint(held_out)  # the epoch never saw fold k
        assert set(fold["held_out_tile_ids"]) == held_out
        fit_areas = {area_of[t] for t in fold["fit_tile_ids"]}
        assert fit_areas.isdisjoint(area_of[t] for t in fold["val_tile_ids"])  # area-grouped
        assert fit_areas.isdisjoint(area_of[t] for t in held_out)
        assert fold["selected_by"] == "inner validation global Dice"
    assert manifest["oof"]["tiles"] == len(fold_of)


def _empty_masks(data: Path, run: Path, tile_ids: list[str]) -> None:
    """Blank the masks of ``tile_ids``, fix the metadata sizes and rebuild the features."""
    emptied = {}
    for tile_id in tile_ids:
        path = data / "train_kelp" / f"{tile_id}_kelp.tif"
        write_mask(path, np.zeros((48, 48), np.uint8))
        emptied[path.name] = path
    metadata = pl.read_csv(data / "metadata.csv").with_columns(
        pl.col("filename")
        .map_elements(lambda n: emptied[n].stat().st_size if n in emptied else None, pl.Int64)
        .fill_null(pl.col("filesize_bytes"))
        .alias("filesize_bytes")
    )
    metadata.write_csv(data / "metadata.csv")
    shutil.rmtree(run / "features")
    build_features(FEATURES, RunLayout.of(run, data))


def test_one_kelp_area_in_the_training_folds_keeps_the_last_epoch(
    run_dir: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = run_dir
    folds = pl.read_csv(run / "folds.csv")
    area = folds.filter(pl.col("fold") == 1)["aoi_id"][0]  # one of fold 0's training areas
    _empty_masks(data, run, folds.filter(pl.col("aoi_id") == area)["tile_id"].to_list())
    manifest = train_cnn(FAST, RunLayout.of(run, data), folds=[0])
    assert "fold 0: early stopping off: only 1 of the 2 training area(s)" in capsys.readouterr().err
    fold = manifest["folds"]["0"]
    assert fold["selected_by"] == "last epoch"
    assert fold["best_epoch"] == FAST.epochs
    assert fold["val_tile_ids"] == []
    assert sorted(fold["fit_tile_ids"]) == sorted(folds.filter(pl.col("fold") == 1)["tile_id"])


def test_training_folds_without_kelp_are_refused(run_dir: tuple[Path, Path]) -> None:
    data, run = run_dir
    folds = pl.read_csv(run / "folds.csv")
    _empty_masks(data, run, folds.filter(pl.col("fold") == 1)["tile_id"].to_list())
    with pytest.raises(InputError, match="fold 0: the 4 training tiles .* hold no kelp"):
        train_cnn(FAST, RunLayout.of(run, data), folds=[0])
    assert not (run / "oof" / "cnn").exists() or not list((run / "oof" / "cnn").glob("*.npy"))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ("no_features", FileNotFoundError, r"run `kelp build-features` first"),
        ("no_folds", ValueError, r"folds file not found; write one with `kelp data folds`"),
        ("other_folds", StaleInputError, r"another folds file.*rerun `kelp build-features"),
        ("unknown_channel", ConfigError, r"unknown channel 'NDVII'; did you mean 'NDVI'"),
        ("bad_fold", ValueError, r"fold\(s\) \[5\] do not exist: .*folds 0..1"),
        ("imagenet", OSError, r"imagenet weights for encoder 'resnet18' are not in the"),
        ("encoder", ValueError, r"unknown encoder 'resnet19'; did you mean 'resnet18'"),
        pytest.param(
            "cuda",
            DeviceError,
            r"no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU"),
        ),
    ],
)
@pytest.mark.usefixtures("offline_hub")
def test_bad_input(
    run_dir: tuple[Path, Path], change: str, error: type[Exception], match: str
) -> None:
    data, run = run_dir
    config, folds = FAST, None
    if change == "no_features":
        shutil.rmtree(run / "features")
    elif change == "no_folds":
        (run / "folds.csv").unlink()
    elif change == "other_folds":
        text = (run / "folds.csv").read_text()
        (run / "folds.csv").write_text(text + "\n")
    elif change == "unknown_channel":
        config = FAST.model_copy(update={"channels": ("nir", "NDVII")})
    elif change == "bad_fold":
        folds = [5]
    elif change == "imagenet":
        config = FAST.model_copy(update={"encoder_weights": "imagenet"})
    elif change == "encoder":
        config = FAST.model_copy(update={"encoder": "resnet19"})
    elif change == "cuda":
        config = FAST.model_copy(update={"device": "cuda"})
    with pytest.raises(error, match=match):
        train_cnn(config, RunLayout.of(run, data), folds=folds)
    assert not (run / "oof").exists()
    assert not (run / "cnn").exists()


@pytest.mark.slow
def test_loader_workers_do_not_change_the_result_and_share_the_cache(
    run_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = run_dir
    other = run.parent / "other"
    shutil.copytree(run, other)
    budgets: list[int] = []
    source = train_module.ChannelSource

    def recording(*args: object) -> object:
        budgets.append(int(args[3]))  # type: ignore[call-overload]
        return source(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module, "ChannelSource", recording)
    train_cnn(FAST, RunLayout.of(run, data), folds=[0])
    train_cnn(FAST.model_copy(update={"num_workers": 2}), RunLayout.of(other, data), folds=[0])
    # 64 MB in total: all of it in this process, or a fifth each to it and 2 + 2 workers
    assert budgets == [64, 64 // 5]
    a = pl.read_csv(run / "cnn" / "fold=0" / "log.csv").drop("seconds")
    b = pl.read_csv(other / "cnn" / "fold=0" / "log.csv").drop("seconds")
    assert a.equals(b)  # augmentation and order depend on (seed, epoch, tile) only


def test_crops_and_steps_per_epoch_size_training_and_oof_stays_whole(
    run_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kelp.cnn.data import TileDataset

    data, run = run_dir
    config = FAST.model_copy(update={"crop_size": 32, "steps_per_epoch": 3, "batch_size": 2})
    shapes: list[tuple[int, ...]] = []
    getitem = TileDataset.__getitem__

    def spy(self: TileDataset, item: object) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = getitem(self, item)  # type: ignore[arg-type]
        if isinstance(item, tuple):  # training draws, not validation tiles
            shapes.append(tuple(image.shape[-2:]))
        return image, mask

    monkeypatch.setattr(TileDataset, "__getitem__", spy)
    train_cnn(config, RunLayout.of(run, data), folds=[0])
    assert shapes == [(32, 32)] * (3 * 3 * 2)  # epochs x steps x batch, each a 32 px crop
    store = MapStore(run / "oof" / "cnn")
    for tile_id in store.tile_ids():  # prediction on whole tiles
        assert store.read(tile_id).shape == (48, 48)
