"""One tile -> one ``(C, H, W) float32`` channel stack: the only place channels are computed.

Trees take the stack flattened and sampled; the CNN takes it as image channels. NaN in the
stack means "no value here": a missing input (-32768), an index outside clear water when
``water_only`` is set, or a filter with too thin a valid neighbourhood. Gradient-boosted
trees route NaN natively; the CNN fills it after normalisation. No inf ever appears.

Channel order: bands, indices, context, offsets (``<band>_offset``), filters
(``<channel>_<kind>_s<sigma>``, by channel, then sigma, then kind).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kelp.bands import MISSING
from kelp.data.tile import Tile
from kelp.errors import ConfigError
from kelp.features.channels import (
    SPECTRAL_BANDS,
    clear_water,
    land_closeness,
    land_mask,
    missing_to_nan,
    water_medians,
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


def build_channels(
    tile: Tile, config: FeatureConfig, pixels: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """Compute a tile's channel stack, on the whole tile or at some of its pixels.

    Args:
        tile: a loaded tile.
        config: what to compute.
        pixels: flat pixel indices (``row * W + col``); ``None``: every pixel. The filters
            and their source channels are computed on the whole tile, as are land closeness
            and the offsets' medians; every other channel only at these pixels, which is
            most of what a sampled feature build can save. The values are those of the
            whole-tile stack at the same pixels, bit for bit.

    Returns:
        ``(stack, names)``: ``(C, H, W) float32`` (``(C, N) float32`` at ``N`` pixels) and
        the C channel names.

    Raises:
        ConfigError: a bad config (see :func:`channel_names`) or a filter scale larger than
            the tile.
    """
    names = channel_names(config)
    base = _base_names(config)
    f = config.filters
    land = land_mask(tile)
    clear = clear_water(tile) if config.water_only or config.offsets else None
    take = _whole if pixels is None else _at(pixels)
    closeness = land_closeness(land) if "land_closeness" in config.context else None
    local = _Inputs.of(tile, clear, take)  # at the pixels asked for
    full = local if pixels is None else None  # the whole tile, when something needs it
    if full is None and (f.channels or config.offsets):
        full = _Inputs.of(tile, clear, _whole)
    medians: dict[str, np.float32] = {}
    if full is not None and clear is not None:
        medians = water_medians({b: full.bands[b] for b in config.offsets}, clear)
    sources = {}
    if full is not None:
        sources = _base_channels(config, set(f.channels), full, medians, closeness)
    near = None if closeness is None else take(closeness)
    values = _base_channels(config, set(base) - set(sources), local, medians, near)
    stack = np.empty((len(names), *take(land).shape), np.float32)
    for i, name in enumerate(base):
        stack[i] = values[name] if name in values else take(sources[name])
    i = len(base)
    weights: dict[bytes, dict[float, np.ndarray]] = {}  # by valid mask: shared smoothing
    for channel in f.channels:
        n = len(f.sigmas) * len(f.kinds)
        shared = weights.setdefault(np.packbits(np.isnan(sources[channel])).tobytes(), {})
        stack[i : i + n] = filter_bank(sources[channel], f.sigmas, f.kinds, shared, pixels)
        i += n
    return stack, names


def _whole(values: np.ndarray) -> np.ndarray:
    return values


def _at(pixels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Values at flat pixel indices, of ``(..., H, W)`` arrays."""

    def take(values: np.ndarray) -> np.ndarray:
        return values.reshape(*values.shape[:-2], -1)[..., pixels]

    return take


@dataclass(frozen=True)
class _Inputs:
    """A tile's bands as channels start from, on the whole tile or at some pixels."""

    bands: dict[str, np.ndarray]  # float32 DNs, NaN where missing
    clear: np.ndarray | None  # clear water
    qa: np.ndarray
    dem: np.ndarray  # int32 metres, -32768 where missing

    @classmethod
    def of(
        cls, tile: Tile, clear: np.ndarray | None, take: Callable[[np.ndarray], np.ndarray]
    ) -> "_Inputs":
        bands: dict[str, np.ndarray] = {
            n: missing_to_nan(take(tile.band(n))) for n in SPECTRAL_BANDS
        }
        return cls(
            bands,
            None if clear is None else take(clear),
            take(tile.band("qa")),
            take(tile.band("dem")),
        )


def _base_channels(
    config: FeatureConfig,
    wanted: set[str],
    inputs: _Inputs,
    medians: dict[str, np.float32],
    closeness: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The ``wanted`` channels that are not filters, from ``inputs``."""
    out: dict[str, np.ndarray] = {}
    for band in config.bands:
        if band in wanted:
            out[band] = inputs.bands[band]
    for name in config.indices:
        index = get_index(name).name
        if index in wanted:
            values = compute_index(name, inputs.bands)
            if config.water_only:
                values = np.where(inputs.clear, values, np.float32(np.nan))  # type: ignore[arg-type]
            out[index] = values
    context = {
        "qa": lambda: (inputs.qa == 1).astype(np.float32),
        "DEMWM": lambda: np.maximum(missing_to_nan(inputs.dem), np.float32(0)),
        "dem_water": lambda: ((inputs.dem <= 0) | (inputs.dem == MISSING)).astype(np.float32),
        "land_closeness": lambda: closeness,
    }
    for name in config.context:
        if name in wanted:
            out[name] = context[name]()
    for band in config.offsets:
        if f"{band}_offset" in wanted:
            median = medians.get(band, np.float32(np.nan))
            out[f"{band}_offset"] = inputs.bands[band] - median
    return out
