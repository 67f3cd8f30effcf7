"""The base models over a stream of prepared tiles: trees tile by tile, the CNN by batches.

Each tree family takes a tile as soon as it is read, at most ``ahead`` tiles before the
oldest tile whose trees are still running, so that the ``(H*W, C)`` pixel rows (the largest
input by far) live only for a few tiles. The CNN takes a batch of tiles of one size
(:func:`~kelp.stacking.tiles.size_batches`) once the batch is complete, beside the trees of
the tiles after it. Results come out batch by batch, each tile once. A CNN batch that fails
is redone one tile at a time, so that only the tile that fails loses its logits.
"""

import functools
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from kelp.stacking.lanes import Lanes
from kelp.stacking.tiles import PreparedTile, size_batches


class Families(Protocol):
    """What the stream needs of the base models (:class:`kelp.stacking.predict.BaseEnsemble`)."""

    @property
    def names(self) -> Sequence[str]: ...

    @property
    def trees(self) -> Mapping[str, Any]: ...

    @property
    def cnn(self) -> Any: ...

    def family_logits(self, name: str, batch: Sequence[PreparedTile]) -> np.ndarray: ...


__all__ = ["AHEAD", "Families", "Logits", "stream_logits"]

AHEAD = 2
"""Tiles whose trees may start before the oldest tile's trees are done."""

Logits = np.ndarray | Exception | None
"""A tile's ``(M, H, W) float32`` base-model logits, the error that stopped them, or ``None``
for a tile the models cannot take."""


def stream_logits(
    ensemble: Families,
    tiles: Iterable[PreparedTile],
    lanes: Lanes,
    batch_size: int,
    ahead: int = AHEAD,
) -> Iterator[tuple[PreparedTile, Logits]]:
    """Every tile with its logits (in :attr:`Families.names` order), batch by batch.

    Args:
        ensemble: the base models.
        tiles: prepared tiles, in order.
        lanes: where the families' work runs.
        batch_size: most tiles per CNN batch.
        ahead: see :data:`AHEAD`.

    Yields:
        ``(tile, logits)``; the next batch is queued before one is waited for, so that the
        lanes do not run dry while the caller writes its masks.
    """
    trees: dict[str, list[Future[np.ndarray]]] = {}
    queued: deque[tuple[list[PreparedTile], Future[np.ndarray] | None]] = deque()
    started = _trees_started(ensemble, tiles, lanes, trees, ahead)
    for batch in size_batches(started, batch_size):
        queued.append((batch, _cnn(ensemble, batch, lanes) if batch[0].ok else None))
        if len(queued) > 1:
            yield from _gathered(ensemble, lanes, trees, *queued.popleft())
    while queued:
        yield from _gathered(ensemble, lanes, trees, *queued.popleft())


def _tree_names(ensemble: Families) -> list[str]:
    return [n for n in ensemble.names if n in ensemble.trees]


def _trees_started(
    ensemble: Families,
    tiles: Iterable[PreparedTile],
    lanes: Lanes,
    trees: dict[str, list[Future[np.ndarray]]],
    ahead: int,
) -> Iterator[PreparedTile]:
    running: deque[list[Future[np.ndarray]]] = deque()
    for tile in tiles:
        if tile.ok and ensemble.trees:
            trees[tile.record.tile_id] = futures = [
                lanes.submit(name, functools.partial(ensemble.family_logits, name, [tile]))
                for name in _tree_names(ensemble)
            ]
            running.append(futures)
            tile = replace(tile, rows=None)  # the tree work holds the rows until it is done
            if len(running) > ahead:
                wait(running.popleft())
        yield tile


def _cnn(
    ensemble: Families, batch: list[PreparedTile], lanes: Lanes
) -> "Future[np.ndarray] | None":
    if ensemble.cnn is None:
        return None
    return lanes.submit("cnn", functools.partial(ensemble.family_logits, "cnn", batch))


def _cnn_logits(
    ensemble: Families,
    batch: list[PreparedTile],
    future: "Future[np.ndarray] | None",
    lanes: Lanes,
) -> list[np.ndarray | Exception | None]:
    if future is None:
        return [None] * len(batch)
    try:
        return list(future.result())
    except Exception as error:
        if len(batch) == 1:
            return [error]
    out: list[np.ndarray | Exception | None] = []
    for tile in batch:  # one at a time: only the tile that fails loses its logits
        out += _cnn_logits(ensemble, [tile], _cnn(ensemble, [tile], lanes), lanes)
    return out


def _gathered(
    ensemble: Families,
    lanes: Lanes,
    trees: dict[str, list[Future[np.ndarray]]],
    batch: list[PreparedTile],
    cnn: "Future[np.ndarray] | None",
) -> Iterator[tuple[PreparedTile, Logits]]:
    if not batch[0].ok:
        yield batch[0], None
        return
    names = _tree_names(ensemble)
    for tile, z_cnn in zip(batch, _cnn_logits(ensemble, batch, cnn, lanes), strict=True):
        futures = dict(zip(names, trees.pop(tile.record.tile_id, []), strict=True))
        logits: Logits
        try:  # the first failure in family order, as one family after another would raise
            parts = []
            for name in ensemble.names:
                if name in futures:
                    parts.append(futures[name].result()[0])
                elif isinstance(z_cnn, Exception):
                    raise z_cnn
                elif z_cnn is not None:
                    parts.append(z_cnn)
            logits = np.stack(parts)
        except Exception as error:
            logits = error
        yield tile, logits
