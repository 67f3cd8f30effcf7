"""Test tiles read and turned into model inputs ahead of the models, in batches of one size.

:func:`prepare_tile` reads a tile and computes what the base models take: the ``(H*W, C)``
pixel rows of its channel stack for the trees, the CNN's channels ``(C', H, W)`` and the
land mask, or records why it could not. :func:`prepared_tiles` runs it in the calling
process or in ``torch`` DataLoader worker processes, which read and stack the next tiles
while the models predict; each tile's values are the same either way (the same function
of the same file). :func:`size_batches` groups tiles of one ``(H, W)`` so that the CNN can
take them in one forward pass; a tile of an odd size simply forms a batch of its own.
"""

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from kelp.data.catalog import TileRecord
from kelp.data.io import raster_grid
from kelp.data.tile import Tile, load_tile
from kelp.errors import TileError
from kelp.features.channels import land_mask
from kelp.features.config import FeatureConfig
from kelp.features.stack import build_channels

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

__all__ = ["PreparedTile", "TileInputs", "prepare_tile", "prepared_tiles", "size_batches"]


@dataclass(frozen=True)
class TileInputs:
    """What to compute for every tile.

    Attributes:
        band_order: the files' band order.
        config: the feature build's config (the stack the trees were trained on).
        rows: compute the trees' pixel rows.
        cnn_index: positions of the CNN's channels in the stack; ``None`` = no CNN.
    """

    band_order: tuple[str, ...]
    config: FeatureConfig
    rows: bool
    cnn_index: tuple[int, ...] | None


@dataclass(frozen=True)
class PreparedTile:
    """One tile ready for the models, or why it is not.

    Attributes:
        record: the tile.
        shape: ``(H, W)``; ``None`` when the file cannot be read at all.
        transform: the image's transform (for its mask); ``None`` when unreadable.
        rows: ``(H*W, C) float32`` C-contiguous pixel rows of the stack (trees).
        raw: ``(C', H, W) float32`` CNN channels, NaN = missing.
        land: ``(H, W) bool`` land mask.
        error_path: the file a :class:`~kelp.errors.TileError` named.
        problem: that error's problem: the tile is unreadable (``shape`` is ``None``) or
            readable with nothing to predict from.
        failure: ``"<ExceptionType>: message"`` of any other error after reading.
    """

    record: TileRecord
    shape: tuple[int, int] | None
    transform: Affine | None
    rows: np.ndarray | None = None
    raw: np.ndarray | None = None
    land: np.ndarray | None = None
    error_path: Path | None = None
    problem: str | None = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the models can take it."""
        return self.problem is None and self.failure is None


def prepare_tile(record: TileRecord, inputs: TileInputs, catch: bool = True) -> PreparedTile:
    """Read a tile and compute its model inputs.

    Args:
        record: the tile.
        inputs: what to compute.
        catch: record errors in the result (they may have to cross from a worker process,
            which not every exception can); ``False`` raises them.

    Returns:
        The prepared tile; on a :class:`~kelp.errors.TileError` its ``problem`` (with the
        raster's grid when the file is readable at all), on any other error its
        ``failure``.

    Raises:
        TileError: an unreadable or invalid tile, when ``catch`` is false.
        Exception: whatever else stops its inputs, when ``catch`` is false.
    """
    if not catch:
        return _inputs(record, load_tile(record, inputs.band_order), inputs)
    try:
        tile = load_tile(record, inputs.band_order)
    except TileError as error:
        grid = raster_grid(record.image)
        shape, transform = grid if grid is not None else (None, None)
        return PreparedTile(record, shape, transform, error_path=error.path, problem=error.problem)
    try:
        return _inputs(record, tile, inputs)
    except Exception as error:  # a readable tile that cannot be predicted: reported by name
        failure = f"{type(error).__name__}: {error}"
        return PreparedTile(record, tile.shape, tile.transform, failure=failure)


def _inputs(record: TileRecord, tile: Tile, inputs: TileInputs) -> PreparedTile:
    from kelp.tabular.predict import pixel_rows

    stack, _ = build_channels(tile, inputs.config)
    rows = pixel_rows(stack) if inputs.rows else None
    raw = None
    if inputs.cnn_index is not None:
        raw = np.ascontiguousarray(stack[list(inputs.cnn_index)])
    return PreparedTile(record, tile.shape, tile.transform, rows, raw, land_mask(tile))


@contextmanager
def prepared_tiles(
    records: Sequence[TileRecord], inputs: TileInputs, workers: int
) -> Iterator[Iterator[PreparedTile]]:
    """The prepared tiles, in the order of ``records``.

    Args:
        records: the tiles.
        inputs: what to compute.
        workers: DataLoader worker processes; 0 (or fewer than 2 tiles: a worker would only
            add its start-up) prepares each tile in this process when it is asked for.

    Yields:
        An iterator over the prepared tiles; the workers stop when the context exits.
    """
    if workers == 0 or len(records) < 2:
        yield (prepare_tile(r, inputs) for r in records)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _dataset(records, inputs),
        batch_size=None,
        num_workers=min(workers, len(records)),
        collate_fn=_as_is,
    )
    iterator = iter(loader)
    try:
        yield (_unshared(item) for item in iterator)
    finally:
        # the workers would otherwise live on until the iterator is collected, which an
        # exception's traceback can postpone to the end of the process
        iterator._shutdown_workers()  # type: ignore[attr-defined]


def _as_is(item: Any) -> Any:
    return item


_Shared = tuple[PreparedTile, dict[str, "torch.Tensor"]]


def _dataset(records: Sequence[TileRecord], inputs: TileInputs) -> "Dataset[_Shared]":
    import torch
    from torch.utils.data import Dataset

    class _Tiles(Dataset[_Shared]):
        def __len__(self) -> int:
            return len(records)

        def __getitem__(self, index: int) -> _Shared:
            item = prepare_tile(records[index], inputs)
            # tensors travel through shared memory instead of being pickled into a pipe
            arrays = {"rows": item.rows, "raw": item.raw, "land": item.land}
            shared = {k: torch.from_numpy(v) for k, v in arrays.items() if v is not None}
            return replace(item, rows=None, raw=None, land=None), shared

    return _Tiles()


def _unshared(shared: _Shared) -> PreparedTile:
    item, tensors = shared
    arrays = {k: v.numpy() for k, v in tensors.items()}
    return replace(item, rows=arrays.get("rows"), raw=arrays.get("raw"), land=arrays.get("land"))


def size_batches(tiles: Iterable[PreparedTile], batch_size: int) -> Iterator[list[PreparedTile]]:
    """Group tiles into batches of one ``(H, W)``, deterministically.

    A batch is yielded as soon as it holds ``batch_size`` tiles; when tiles of other sizes
    wait too (``2 * batch_size`` in all), the size waiting longest goes as it is, so that
    memory stays bounded however the sizes mix; the rest go at the end, oldest first. A
    tile the models cannot take goes alone, after every tile before it, so that a stop at
    it (``on_error="fail"``) leaves the masks of all the tiles before it, as tile by tile.

    Args:
        tiles: prepared tiles, in order.
        batch_size: most tiles per batch.

    Yields:
        Lists of tiles; each tile exactly once.
    """
    waiting: dict[tuple[int, int], list[PreparedTile]] = {}  # insertion order = age
    for tile in tiles:
        if not tile.ok or tile.shape is None:
            yield from waiting.values()
            waiting.clear()
            yield [tile]
            continue
        batch = waiting.setdefault(tile.shape, [])
        batch.append(tile)
        if len(batch) == batch_size:
            yield waiting.pop(tile.shape)
        elif sum(map(len, waiting.values())) >= 2 * batch_size:
            yield waiting.pop(next(iter(waiting)))
    yield from waiting.values()
