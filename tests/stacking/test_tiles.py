"""Tiles prepared for `kelp predict`: the same in loader workers as in process, errors kept
by name, batches of one size in a deterministic order."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch.utils.data

from kelp.data.catalog import TileRecord, open_catalog
from kelp.data.io import write_image
from kelp.data.tile import load_tile
from kelp.features.config import FeatureConfig, FilterConfig
from kelp.features.stack import build_channels, channel_names
from kelp.stacking.tiles import (
    PreparedTile,
    TileInputs,
    prepare_tile,
    prepared_tiles,
    size_batches,
)

CONFIG = FeatureConfig(indices=("NDVI",), filters=FilterConfig(channels=("nir",), sigmas=(1.0,)))


def _inputs(cnn: tuple[str, ...] = ("nir", "NDVI")) -> TileInputs:
    names = channel_names(CONFIG)
    index = tuple(names.index(c) for c in cnn)
    return TileInputs(("swir", "nir", "red", "green", "blue", "qa", "dem"), CONFIG, True, index)


def _records(tiny_dataset: Callable[..., Path]) -> list[TileRecord]:
    """Five test tiles: three good ones, one all-missing, one truncated file."""
    data = tiny_dataset(n_areas=1, dates=1, n_test=5)
    records = sorted(open_catalog(data).test, key=lambda r: r.tile_id)
    write_image(records[1].image, np.full((7, 48, 48), -32768, np.int32))
    records[3].image.write_bytes(records[3].image.read_bytes()[:100])
    return records


def _same(a: PreparedTile, b: PreparedTile) -> None:
    assert (a.record, a.shape, a.transform) == (b.record, b.shape, b.transform)
    assert (a.error_path, a.problem, a.failure) == (b.error_path, b.problem, b.failure)
    for name in ("rows", "raw", "land"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name


def test_prepared_tile_holds_what_the_models_take(tiny_dataset: Callable[..., Path]) -> None:
    records = _records(tiny_dataset)
    good, missing, truncated = (prepare_tile(records[i], _inputs()) for i in (0, 1, 3))
    stack, _ = build_channels(load_tile(records[0]), CONFIG)
    assert good.ok and good.shape == (48, 48)
    assert good.rows is not None and good.rows.flags.c_contiguous
    assert good.rows.shape == (48 * 48, stack.shape[0])
    assert np.array_equal(good.rows, stack.reshape(stack.shape[0], -1).T, equal_nan=True)
    names = channel_names(CONFIG)
    assert good.raw is not None
    assert np.array_equal(good.raw, stack[[names.index("nir"), names.index("NDVI")]], True)
    assert good.land is not None and good.land.dtype == bool
    # readable with nothing to predict from: its grid, for an all-zero mask
    assert not missing.ok and missing.shape == (48, 48) and missing.transform is not None
    assert missing.problem is not None and "every pixel is missing" in missing.problem
    # unreadable: no grid at all
    assert not truncated.ok and truncated.shape is None and truncated.problem
    assert truncated.error_path == records[3].image


def test_workers_give_the_same_tiles_in_the_same_order(tiny_dataset: Callable[..., Path]) -> None:
    records = _records(tiny_dataset)
    with prepared_tiles(records, _inputs(), workers=0) as tiles:
        alone = list(tiles)
    with prepared_tiles(records, _inputs(), workers=2) as tiles:
        loaded = list(tiles)
    assert [t.record.tile_id for t in loaded] == [r.tile_id for r in records]
    for a, b in zip(alone, loaded, strict=True):
        _same(a, b)


def test_one_tile_starts_no_worker(
    tiny_dataset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_loader(*args: object, **kwargs: object) -> None:
        raise AssertionError("a DataLoader was started for one tile")

    monkeypatch.setattr(torch.utils.data, "DataLoader", no_loader)
    records = _records(tiny_dataset)[:1]
    with prepared_tiles(records, _inputs(), workers=2) as tiles:
        [tile] = list(tiles)
    assert tile.ok


def test_errors_are_raised_when_not_caught(tiny_dataset: Callable[..., Path]) -> None:
    records = _records(tiny_dataset)
    with pytest.raises(Exception, match="every pixel is missing"):
        prepare_tile(records[1], _inputs(), catch=False)


def _tile(i: int, shape: tuple[int, int], ok: bool = True) -> PreparedTile:
    record = TileRecord(f"T{i}", Path(f"T{i}_satellite.tif"), None, "test")
    return PreparedTile(record, shape, None, problem=None if ok else "bad")


A, B, C, D, E = (8, 8), (8, 9), (9, 8), (5, 5), (1, 40)


@pytest.mark.parametrize(
    ("shapes", "bad", "batch_size", "expected"),
    [
        ([A, A, A, A, A], (), 2, [[0, 1], [2, 3], [4]]),
        ([A, A, B, A, B, A], (), 2, [[0, 1], [2, 4], [3, 5]]),
        ([A, B, A, C, A], (), 3, [[0, 2, 4], [1], [3]]),
        # sizes that never fill a batch: the oldest goes once 2 * batch_size tiles wait
        ([A, B, C, D, E], (), 2, [[0], [1], [2], [3], [4]]),
        ([A, B, A, C, D, B], (), 2, [[0, 2], [1, 5], [3], [4]]),
        # a tile the models cannot take goes alone, after every tile before it
        ([A, B, A, A, A], (2,), 4, [[0], [1], [2], [3, 4]]),
        ([A] * 3, (), 1, [[0], [1], [2]]),
    ],
)
def test_size_batches(
    shapes: list[tuple[int, int]],
    bad: tuple[int, ...],
    batch_size: int,
    expected: list[list[int]],
) -> None:
    tiles = [_tile(i, s, i not in bad) for i, s in enumerate(shapes)]
    batches = list(size_batches(tiles, batch_size))
    assert [[int(t.record.tile_id[1:]) for t in b] for b in batches] == expected
    for batch in batches:
        assert len({t.shape for t in batch}) == 1 and len(batch) <= batch_size
