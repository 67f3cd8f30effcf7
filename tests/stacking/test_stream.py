"""The stream of base-model work: every tile once with its own logits, the trees a few tiles
ahead at most, the CNN by batches of one size, failures kept to the tile that fails."""

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kelp.data.catalog import TileRecord
from kelp.stacking.lanes import Lanes
from kelp.stacking.stream import stream_logits
from kelp.stacking.tiles import PreparedTile


class _Ensemble:
    """Stands in for BaseEnsemble: each family's logit is a number made of tile and family."""

    names = ("cnn", "lightgbm", "xgboost")

    def __init__(self, fail: dict[str, str] | None = None) -> None:
        self.trees = {"lightgbm": [], "xgboost": []}
        self.cnn = object()
        self.fail = fail or {}
        self.cnn_batches: list[list[str]] = []
        self.lock = threading.Lock()
        self.rows_alive = 0
        self.most_rows_alive = 0

    def family_logits(self, name: str, batch: list[PreparedTile]) -> np.ndarray:
        ids = [t.record.tile_id for t in batch]
        if name == "cnn":
            self.cnn_batches.append(ids)
            assert all(t.rows is None for t in batch)  # the rows went to the trees only
        else:
            time.sleep(0.005)
        for tile_id in ids:
            if self.fail.get(tile_id) == name:
                raise RuntimeError(f"{name} fails on {tile_id}")
        return np.stack([_value(t, name) for t in batch])


def _value(tile: PreparedTile, name: str) -> np.ndarray:
    assert tile.shape is not None
    number = int(tile.record.tile_id[1:]) * 10 + _Ensemble.names.index(name)
    return np.full(tile.shape, number, np.float32)


def _tiles(shapes: list[tuple[int, int]], bad: tuple[int, ...] = ()) -> list[PreparedTile]:
    out = []
    for i, shape in enumerate(shapes):
        record = TileRecord(f"T{i}", Path(f"T{i}_satellite.tif"), None, "test")
        rows = np.zeros((shape[0] * shape[1], 3), np.float32)
        problem = "bad" if i in bad else None
        out.append(PreparedTile(record, shape, None, rows=rows, problem=problem))
    return out


SHAPES = [(4, 4), (4, 4), (3, 5), (4, 4), (4, 4), (3, 5), (4, 4), (2, 2)]


@pytest.mark.parametrize("lanes", [1, 2])
def test_every_tile_once_with_its_own_logits(lanes: int) -> None:
    ensemble = _Ensemble()
    tiles = _tiles(SHAPES, bad=(5,))
    with Lanes(ensemble.names, lanes) as running:
        out = list(stream_logits(ensemble, tiles, running, batch_size=3))  # type: ignore[arg-type]
    assert sorted(t.record.tile_id for t, _ in out) == sorted(t.record.tile_id for t in tiles)
    for tile, logits in out:
        if tile.record.tile_id == "T5":
            assert logits is None  # the models cannot take it
            continue
        assert isinstance(logits, np.ndarray) and logits.shape == (3, *tile.shape)
        for m, name in enumerate(ensemble.names):
            assert np.array_equal(logits[m], _value(tile, name))
    for batch in ensemble.cnn_batches:  # one size per batch, at most batch_size
        assert len({dict(zip([t.record.tile_id for t in tiles], SHAPES))[i] for i in batch}) == 1
        assert len(batch) <= 3
    assert ["T0", "T1", "T3"] in ensemble.cnn_batches  # batches hold more than one tile


class _Counted(Lanes):
    """Lanes that count the tiles handed to the trees and not yet done with."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__(names, 2)
        self.handed: set[str] = set()
        self.done: set[str] = set()
        self.most = 0
        self.lock = threading.Lock()

    def submit(self, name: str, work: Any) -> Any:
        tile_id = work.args[1][0].record.tile_id
        if name != "xgboost":
            with self.lock:
                self.handed.add(tile_id)
                self.most = max(self.most, len(self.handed - self.done))
            return super().submit(name, work)

        def last() -> Any:  # the last tree family of a tile: its rows may go
            out = work()
            with self.lock:
                self.done.add(tile_id)
            return out

        return super().submit(name, last)


@pytest.mark.parametrize(("ahead", "most"), [(2, 3), (0, 1)])
def test_the_trees_run_at_most_a_few_tiles_ahead(ahead: int, most: int) -> None:
    ensemble = _Ensemble()
    with _Counted(ensemble.names) as running:
        out = list(stream_logits(ensemble, _tiles([(4, 4)] * 12), running, 8, ahead))  # type: ignore[arg-type]
    assert len(out) == 12 and len(running.done) == 12
    assert running.most <= most  # the pixel rows of at most ahead + 1 tiles at a time


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_failure_costs_only_its_tile(lanes: int) -> None:
    ensemble = _Ensemble(fail={"T1": "cnn", "T4": "xgboost"})
    with Lanes(ensemble.names, lanes) as running:
        out = dict(
            (t.record.tile_id, z)
            for t, z in stream_logits(ensemble, _tiles([(4, 4)] * 6), running, 3)  # type: ignore[arg-type]
        )
    assert isinstance(out["T1"], RuntimeError) and "cnn fails on T1" in str(out["T1"])
    assert isinstance(out["T4"], RuntimeError) and "xgboost fails on T4" in str(out["T4"])
    for tile_id in ("T0", "T2", "T3", "T5"):
        assert isinstance(out[tile_id], np.ndarray), tile_id
    # the CNN batch holding T1 failed, then went one tile at a time; the other batch did not
    assert ["T3", "T4", "T5"] in ensemble.cnn_batches
    first = [b for b in ensemble.cnn_batches if b != ["T3", "T4", "T5"]]
    assert first == [["T0", "T1", "T2"], ["T0"], ["T1"], ["T2"]]
