"""A run with hand-made out-of-fold maps whose signal we control."""

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from kelp.data.catalog import open_catalog
from kelp.data.folds import make_folds
from kelp.data.folds_file import write_folds
from kelp.data.io import write_mask
from kelp.features.build import build_features
from kelp.features.config import FeatureConfig, FilterConfig
from kelp.features.manifest import read_build
from kelp.layout import RunLayout
from kelp.maps import MapStore

TINY_FEATURES = FeatureConfig(indices=("NDVI",), filters=FilterConfig(channels=(), sigmas=()))


@pytest.fixture
def oof_run(tiny_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    """``(data, run)``: 12 train tiles with blobs of kelp, 3 folds, a feature build and two
    base models' logit maps.

    ``cnn`` sees kelp clearly in the left half of each tile and only noise on the right;
    ``xgboost`` the other way round: each alone misses half the kelp, together they see all
    of it.
    """
    data = tiny_dataset(n_areas=6, dates=2, n_test=2)
    rng = np.random.default_rng(0)
    catalog = open_catalog(data)
    truths = {}
    for record in catalog.train:
        blobs = ndimage.gaussian_filter(rng.normal(size=(48, 48)), 3) > 0.12
        truths[record.tile_id] = blobs.astype(np.uint8)
        assert record.mask is not None
        write_mask(record.mask, truths[record.tile_id])
    (data / "metadata.csv").unlink()  # the masks were rewritten: its sizes no longer hold
    run = tmp_path / "run"
    folds = make_folds(data, k=3, seed=0)
    write_folds(folds, run / "folds.csv")
    sha = hashlib.sha256((run / "folds.csv").read_bytes()).hexdigest()
    build_features(TINY_FEATURES, RunLayout.of(run, data))
    stack_hash = read_build(run / "features").stack_hash
    left = np.zeros((48, 48), bool)
    left[:, :24] = True
    for name, sees in (("cnn", left), ("xgboost", ~left)):
        store = MapStore(run / "oof" / name)
        for tile_id, truth in truths.items():
            signal = np.where(truth, 3.0, -3.0)
            z = np.where(sees, signal, 0.0) + rng.normal(0, 1.0, truth.shape)
            store.write(tile_id, z, "logit")
        store.write_manifest(
            {
                "kind": "logit",
                "model": name,
                "key": f"{name}-key",
                "folds": {t: int(f) for t, f in zip(folds.tile_ids, folds.folds)},
                "folds_sha256": sha,
                "stack_hash": stack_hash,
            }
        )
    return data, run
