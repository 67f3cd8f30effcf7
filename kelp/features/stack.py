"""One tile -> one ``(C, H, W) float32`` channel stack: the only place channels are computed.

Trees take the stack flattened and sampled; the CNN takes it as image channels. NaN in the
stack means "no value here": a missing input (-32768), an index outside clear water when
``water_only`` is set, or a filter with too thin a valid neighbourhood. Gradient-boosted
trees route NaN natively; the CNN fills it after normalisation. No inf ever appears.

Channel order: bands, indices, context, offsets (``<band>_offset``), filters
(``<channel>_<kind>_s<sigma>``, by channel, then sigma, then kind).
"""

import numpy as np

from kelp.data.tile import Tile
from kelp.errors import ConfigError
from kelp.features.channels import (
    clear_water,
    dem_metres,
    land_closeness,
    land_mask,
    spectral_bands,
    water_offsets,
)
from kelp.features.config import FeatureConfig
from kelp.features.filters import filter_bank, filter_names
from kelp.features.indices import compute_index, get_index

__all__ = ["build_channels", "channel_names"]


def _base_names(config: FeatureConfig) -> list[str]:
    indices = [get_index(name).name for name in config.indices]
    offsets = [f"{band}_offset" for band in config.offsets]
    return [*config.bands, *indices, *config.context, *offsets]


def channel_names(config: FeatureConfig) -> list[str]:
    """Names of the channels :func:`build_channels` returns, in order.

    Raises:
        ConfigError: an unknown index name, a filter on a channel not in the stack, or a
            name repeated.
    """
    base = _base_names(config)
    repeated = sorted({n for n in base if base.count(n) > 1})
    if repeated:
        raise ConfigError(f"channel(s) {repeated} listed twice in the feature config")
    names = list(base)
    for channel in config.filters.channels:
        if channel not in base:
            raise ConfigError(
                f"filter channel {channel!r} is not a channel of the stack; choose from {base}"
            )
        names += filter_names(channel, config.filters.sigmas, config.filters.kinds)
    return names


def build_channels(tile: Tile, config: FeatureConfig) -> tuple[np.ndarray, list[str]]:
    """Compute a tile's channel stack.

    Args:
        tile: a loaded tile.
        config: what to compute.

    Returns:
        ``(stack, names)``: ``(C, H, W) float32`` and the C channel names.

    Raises:
        ConfigError: a bad config (see :func:`channel_names`) or a filter scale larger than
            the tile.
    """
    names = channel_names(config)
    base = _base_names(config)
    stack = np.empty((len(names), *tile.shape), np.float32)
    bands = spectral_bands(tile)
    land = land_mask(tile)
    clear = clear_water(tile) if config.water_only or config.offsets else None
    channels: dict[str, np.ndarray] = {}
    for band in config.bands:
        channels[band] = bands[band]
    for name in config.indices:
        values = compute_index(name, bands)
        if config.water_only:
            values = np.where(clear, values, np.float32(np.nan))  # type: ignore[arg-type]
        channels[get_index(name).name] = values
    context = {
        "qa": lambda: (tile.band("qa") == 1).astype(np.float32),
        "DEMWM": lambda: np.maximum(dem_metres(tile), 0),
        "dem_water": lambda: (~land).astype(np.float32),
        "land_closeness": lambda: land_closeness(land),
    }
    for name in config.context:
        channels[name] = context[name]()
    if config.offsets:
        offsets = water_offsets({b: bands[b] for b in config.offsets}, clear)  # type: ignore[arg-type]
        for name, values in offsets.items():
            channels[f"{name}_offset"] = values
    for i, name in enumerate(base):
        stack[i] = channels[name]
    i = len(base)
    f = config.filters
    for channel in f.channels:
        n = len(f.sigmas) * len(f.kinds)
        stack[i : i + n] = filter_bank(channels[channel], f.sigmas, f.kinds)
        i += n
    return stack, names
