"""Joint augmentation, padded collation, seeded sampling, the training dataset."""

from pathlib import Path

import numpy as np
import pytest
import torch

from kelp.cnn.channels import ChannelSource
from kelp.cnn.data import IGNORE, EpochSampler, TileDataset, augment, collate, random_crop
from kelp.cnn.normalise import Normaliser
from kelp.data import open_catalog
from kelp.features.manifest import read_manifest
from tests.cnn.conftest import CHANNELS, FEATURES


@pytest.mark.parametrize("shape", [(6, 6), (4, 7)])
def test_augment_moves_image_and_mask_together(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 2, shape).astype(np.uint8)
    image = np.stack([mask * 2.0, mask * 3.0]).astype(np.float32)
    seen = set()
    for seed in range(40):
        out_image, out_mask = augment(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_image[0], out_mask * 2.0)
        np.testing.assert_array_equal(out_image[1], out_mask * 3.0)
        assert out_image.flags.c_contiguous
        assert out_mask.shape == (out_image.shape[1:])
        seen.add(out_mask.tobytes())
    if shape[0] == shape[1]:
        assert len(seen) == 8  # every element of the dihedral group is drawn
    else:
        assert all(out_mask.shape == shape for _, out_mask in [augment(image, mask, rng)])
        assert len(seen) == 4  # flips and 180-degree turns only: shapes stay


def test_collate_pads_with_ignore() -> None:
    big = (torch.ones(2, 4, 5), torch.ones(4, 5))
    small = (torch.full((2, 3, 2), 2.0), torch.zeros(3, 2))
    images, masks = collate([big, small])
    assert images.shape == (2, 2, 4, 5)
    assert masks.shape == (2, 4, 5)
    assert (images[1, :, :3, :2] == 2).all()
    assert (images[1, :, 3:, :] == 0).all()
    assert (masks[1, :3, :2] == 0).all()
    assert (masks[1, 3:, :] == IGNORE).all()
    assert (masks[1, :, 2:] == IGNORE).all()


def _draw(sampler: EpochSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    pairs = list(sampler)
    assert all(e == epoch for e, _ in pairs)
    return [i for _, i in pairs]


def test_sampler_is_seeded_and_favours_kelp() -> None:
    has_kelp = [True] + [False] * 9
    sampler = EpochSampler(has_kelp, True, 9.0, seed=0)
    assert len(sampler) == 10
    assert _draw(sampler, 1) == _draw(EpochSampler(has_kelp, True, 9.0, seed=0), 1)
    assert _draw(sampler, 1) != _draw(sampler, 2)
    many = [i for epoch in range(200) for i in _draw(sampler, epoch)]
    share = many.count(0) / len(many)
    assert 0.4 < share < 0.6  # weight 9 of 18
    assert sorted(_draw(EpochSampler(has_kelp, False, 9.0, 0), 1)) == list(range(10))
    assert sorted(_draw(EpochSampler([False] * 4, True, 9.0, 0), 1)) == [0, 1, 2, 3]


def test_sampler_draws_fill_a_fixed_number_of_items() -> None:
    plain = EpochSampler([False] * 4, False, 3.0, seed=0, draws=10)
    weighted = EpochSampler([True, False, False], True, 3.0, seed=0, draws=7)
    assert len(plain) == 10 and len(weighted) == 7
    items = list(plain)
    assert [d for _, _, d in items] == list(range(10))  # numbered draws
    tiles = [i for _, i, _ in items]
    assert sorted(tiles[:4]) == sorted(tiles[4:8]) == [0, 1, 2, 3]  # whole shuffles first
    assert len({i for _, i, _ in weighted}) >= 1 and len(list(weighted)) == 7
    assert list(plain) == list(EpochSampler([False] * 4, False, 3.0, seed=0, draws=10))


def test_random_crop_is_a_window_and_favours_kelp() -> None:
    image = np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)
    mask = np.zeros((40, 50), np.uint8)
    mask[35:, 45:] = 1  # kelp in one corner only
    hits = 0
    for n in range(200):
        img, m = random_crop(image, mask, 16, np.random.default_rng(n))
        assert img.shape == (3, 16, 16) and m.shape == (16, 16)
        top, left = divmod(int(img[0, 0, 0]), 50)
        np.testing.assert_array_equal(img, image[:, top : top + 16, left : left + 16])
        np.testing.assert_array_equal(m, mask[top : top + 16, left : left + 16])
        hits += bool(m.any())
    assert hits > 70  # about half the draws centre on kelp; a uniform window: 3 % of draws
    small, m = random_crop(image[:, :10], mask[:10], 16, np.random.default_rng(0))
    assert small.shape == (3, 10, 16) and m.shape == (10, 16)  # a short side stays whole


def test_dataset_items(run_dir: tuple[Path, Path]) -> None:
    data, run = run_dir
    stats = read_manifest(run / "features")["normalisation"]["without_fold"]["0"]["channels"]
    norm = Normaliser.from_stats("quantile", CHANNELS, stats)
    order = ("swir", "nir", "red", "green", "blue", "qa", "dem")
    source = ChannelSource(FEATURES, CHANNELS, order, cache_mb=16)
    records = open_catalog(data).train
    train = TileDataset(records, source, norm, augment=True, seed=3)
    image, mask = train[(1, 0)]
    assert image.shape == (len(CHANNELS), 48, 48)
    assert image.dtype == mask.dtype == torch.float32
    assert torch.isfinite(image).all()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    epoch1 = [train[(1, i)][0] for i in range(len(train))]
    assert all(torch.equal(a, train[(1, i)][0]) for i, a in enumerate(epoch1))  # f(epoch, i)
    assert any(not torch.equal(a, train[(2, i)][0]) for i, a in enumerate(epoch1))
    cropped = TileDataset(records, source, norm, augment=True, seed=3, crop=32)
    first, first_mask = cropped[(1, 0, 0)]
    assert first.shape == (len(CHANNELS), 32, 32) and first_mask.shape == (32, 32)
    assert torch.equal(first, cropped[(1, 0, 0)][0])  # f(epoch, i, draw)
    assert cropped[(1, 0)][0].shape == (len(CHANNELS), 48, 48)  # no draw: the whole tile
    raw, _ = source(records[0])
    np.testing.assert_array_equal(train[0][0].numpy(), norm(raw))  # a plain index: as is
    test_tile = open_catalog(data).test[0]
    with pytest.raises(ValueError, match="has no kelp mask"):
        TileDataset([test_tile], source, norm)[0]
