"""The whole stage with the real smp U-Net (no stand-in), on tiny tiles."""

from pathlib import Path

import numpy as np
import pytest
import torch

from kelp.cnn.channels import ChannelSource
from kelp.cnn.checkpoint import load_checkpoint
from kelp.cnn.ensemble import Member, predict_tiles
from kelp.cnn.train import train_cnn
from kelp.data import open_catalog
from kelp.layout import RunLayout
from kelp.maps import MapStore
from tests.cnn.conftest import FEATURES, TINY


@pytest.mark.slow
def test_real_unet_all_folds(run_dir: tuple[Path, Path]) -> None:
    data, run = run_dir
    config = TINY.model_copy(update={"epochs": 2, "tta": True})
    manifest = train_cnn(config, RunLayout.of(run, data))
    assert set(manifest["folds"]) == {"0", "1"}
    assert 0 <= manifest["oof"]["metrics"]["dice"] <= 1
    store = MapStore(run / "oof" / "cnn")
    assert len(store.tile_ids()) == 8
    # the OOF maps are what the reloaded best checkpoint predicts (float16 storage)
    ckpt = load_checkpoint(run / "cnn" / "fold=0" / "best", config.channels)
    records = [r for r in open_catalog(data).train if store.manifest()["folds"][r.tile_id] == 0]
    order = ("swir", "nir", "red", "green", "blue", "qa", "dem")
    source = ChannelSource(FEATURES, config.channels, order)
    members = [Member(ckpt.model, ckpt.normaliser)]
    for tile_id, logits in predict_tiles(members, records, source, torch.device("cpu"), tta=True):
        np.testing.assert_allclose(store.read(tile_id), logits, rtol=2e-3, atol=2e-2)
