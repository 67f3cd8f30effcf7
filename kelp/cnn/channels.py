"""The CNN's input channels: a named subset of the feature stack, built by ``kelp.features``.

There is no second implementation of any channel here. :func:`subset_config` narrows the
feature build's :class:`~kelp.features.FeatureConfig` to what the subset needs (no filter
bank unless a filtered channel is asked for, only the indices asked for) and
:func:`~kelp.features.build_channels` computes it; each channel depends only on the tile and
its own definition, so the values are those of the full stack (a test checks this), at a
fraction of the cost.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kelp.data.catalog import TileRecord
from kelp.data.tile import load_tile
from kelp.errors import unknown_name
from kelp.features import FeatureConfig, build_channels, channel_names
from kelp.features.config import FilterConfig
from kelp.features.filters import filter_names
from kelp.features.indices import get_index

__all__ = ["ChannelSource", "check_channels", "subset_config"]


def check_channels(channels: Sequence[str], available: Sequence[str]) -> None:
    """Check that every requested channel exists.

    Args:
        channels: requested names.
        available: the feature stack's names, in order.

    Raises:
        ConfigError: the "unknown channel" message for the first unknown one (naming the
            others too), listing the valid names.
    """
    unknown = [c for c in channels if c not in available]
    if unknown:
        others = f" (also unknown: {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""
        raise unknown_name(
            "channel",
            unknown[0],
            available,
            extra=f"{others}; change [cnn] channels, or add {'them' if others else 'it'} to "
            "the [features] config and rerun `kelp build-features`",
        )


def subset_config(config: FeatureConfig, channels: Sequence[str]) -> FeatureConfig:
    """The smallest feature config whose stack holds ``channels`` with identical values.

    Args:
        config: the feature build's config.
        channels: the wanted channel names (each in ``channel_names(config)``).

    Returns:
        A config computing a superset of ``channels`` (filtered channels bring their base
        channel along).

    Raises:
        ConfigError: a channel not in ``config``'s stack.
    """
    check_channels(channels, channel_names(config))
    wanted = set(channels)
    f = config.filters
    filtered = tuple(
        c for c in f.channels if wanted & set(filter_names(c, f.sigmas, f.kinds))
    )  # base channels whose filter outputs are wanted
    needed = wanted | set(filtered)
    return config.model_copy(
        update={
            "bands": tuple(b for b in config.bands if b in needed),
            "indices": tuple(i for i in config.indices if get_index(i).name in needed),
            "context": tuple(c for c in config.context if c in needed),
            "offsets": tuple(b for b in config.offsets if f"{b}_offset" in needed),
            "filters": FilterConfig(channels=filtered, sigmas=f.sigmas, kinds=f.kinds),
        }
    )


@dataclass
class ChannelSource:
    """Reads a tile and returns its raw channel subset, keeping recent ones in memory.

    The cache holds raw (un-normalised) channels so that one cache serves every fold;
    each process (each DataLoader worker) has its own, so ``cache_mb`` is one process's
    share (``train_cnn`` divides the configured total among them).

    Args:
        config: the feature build's config.
        channels: channel names, in input order.
        band_order: the files' band order (from the feature manifest).
        cache_mb: memory budget of the cache; 0 disables it.
    """

    config: FeatureConfig
    channels: tuple[str, ...]
    band_order: tuple[str, ...]
    cache_mb: int = 0
    _cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(
        default_factory=dict, repr=False
    )
    _cached_bytes: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._subset = subset_config(self.config, self.channels)
        names = channel_names(self._subset)
        self._index = [names.index(c) for c in self.channels]

    def __call__(self, record: TileRecord) -> tuple[np.ndarray, np.ndarray | None]:
        """One tile's channels and mask.

        Args:
            record: the tile.

        Returns:
            ``(raw, mask)``: ``(C, H, W) float32`` with NaN = missing, in ``channels``
            order, and the ``(H, W) uint8`` kelp mask (``None`` for test tiles).

        Raises:
            TileError: unreadable or invalid tile.
        """
        hit = self._cache.get(record.tile_id)
        if hit is not None:
            return hit
        tile = load_tile(record, self.band_order)
        stack, _ = build_channels(tile, self._subset)
        raw = np.ascontiguousarray(stack[self._index])
        item = (raw, tile.mask)
        size = raw.nbytes + (tile.mask.nbytes if tile.mask is not None else 0)
        if self._cached_bytes + size <= self.cache_mb * 2**20:
            self._cache[record.tile_id] = item
            self._cached_bytes += size
        return item
