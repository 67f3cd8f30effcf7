"""Checkpoints: a real U-Net learns, saves, and reloads to identical outputs; channel checks."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kelp.cnn.channels import ChannelSource
from kelp.cnn.checkpoint import load_checkpoint, load_state, save_checkpoint
from kelp.cnn.data import TileDataset, collate
from kelp.cnn.losses import make_loss
from kelp.cnn.model import ModelSpec, create_model
from kelp.cnn.normalise import Normaliser
from kelp.cnn.optim import make_optimizer
from kelp.data import open_catalog
from kelp.errors import StaleInputError
from kelp.features.manifest import read_manifest
from tests.cnn.conftest import CHANNELS, FEATURES, TINY

ORDER = ("swir", "nir", "red", "green", "blue", "qa", "dem")


def _normaliser(run: Path) -> Normaliser:
    stats = read_manifest(run / "features")["normalisation"]["train"]["channels"]
    return Normaliser.from_stats("quantile", CHANNELS, stats)


def test_real_unet_learns_and_reloads_identically(
    run_dir: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = run_dir
    torch.manual_seed(0)
    spec = ModelSpec.from_config(TINY)
    model = create_model(spec)
    normaliser = _normaliser(run)
    records = [r for r in open_catalog(data).train if r.tile_id.endswith("00000")]  # kelp tiles
    dataset = TileDataset(records, ChannelSource(FEATURES, CHANNELS, ORDER, 16), normaliser, False)
    images, masks = collate([dataset[i] for i in range(len(dataset))])
    loss_fn = make_loss("dice_bce")
    optimizer = make_optimizer(model, TINY.model_copy(update={"lr": 3e-3}))
    losses = []
    for _ in range(12):
        loss = loss_fn(model(images), masks.unsqueeze(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]

    path = save_checkpoint(tmp_path / "best", model, spec, normaliser, {"training": {"epoch": 12}})
    loaded = load_checkpoint(path, CHANNELS)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(images), model(images))
    assert loaded.channels == CHANNELS
    assert loaded.spec == spec
    assert loaded.meta["training"]["epoch"] == 12
    np.testing.assert_array_equal(loaded.normaliser.offset, normaliser.offset)
    assert load_state(path) is None
    assert json.loads((path / "config.json").read_text())["channels"] == list(CHANNELS)


def test_checkpoint_with_other_channels_is_refused(tmp_path: Path) -> None:
    spec = ModelSpec("unet", "resnet18", 3, (16, 8, 8), 2)
    stats = {c: {"q01": 0.0, "q99": 1.0} for c in ("nir", "NDVI")}
    normaliser = Normaliser.from_stats("quantile", ["nir", "NDVI"], stats)
    path = save_checkpoint(tmp_path / "ck", create_model(spec), spec, normaliser, {})
    with pytest.raises(StaleInputError, match=r"trained on channels \['nir', 'NDVI'\].*"
                       r"missing \['swir'\], extra \['NDVI'\]"):  # fmt: skip
        load_checkpoint(path, ["nir", "swir"])
    with pytest.raises(StaleInputError, match="different order"):
        load_checkpoint(path, ["NDVI", "nir"])
    assert load_checkpoint(path).channels == ("nir", "NDVI")


def test_overwrite_and_missing(tmp_path: Path) -> None:
    spec = ModelSpec("unet", "resnet18", 3, (16, 8, 8), 1)
    normaliser = Normaliser.from_stats("quantile", ["nir"], {"nir": {"q01": 0, "q99": 1}})
    path = tmp_path / "ck"
    save_checkpoint(path, create_model(spec), spec, normaliser, {"n": 1}, state={"epoch": 1})
    save_checkpoint(path, create_model(spec), spec, normaliser, {"n": 2}, state={"epoch": 2})
    assert load_checkpoint(path).meta["n"] == 2
    assert load_state(path) == {"epoch": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary leftovers
    with pytest.raises(FileNotFoundError, match="train one with `kelp train-cnn`"):
        load_checkpoint(tmp_path / "nothing")
    (path / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a kelp CNN checkpoint"):
        load_checkpoint(path)
