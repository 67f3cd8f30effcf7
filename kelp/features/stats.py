"""Normalisation statistics of a feature build, streamed tile by tile.

They are computed on train tiles only, over a regular grid of every 4th pixel each way (not
just the sampled rows, which over-represent kelp): mean and std merged exactly across tiles
(Chan's pairwise update), the 1% and 99% quantiles from a bounded uniform sample of those
pixels. The sample is a bottom-k sample (smallest random keys), so it does not depend on the
order tiles are processed in. They are reported for all train tiles and for each "all folds
but k" set, which is what fold k's CNN may see.
"""

import base64
import dataclasses
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kelp.features.sampling import KINDS, tile_rng

__all__ = ["Collector", "Stats", "TileSummary", "normalisation", "stats_pixels", "summarise"]

_QUANTILE_SAMPLE = 50_000  # pixels kept for quantiles, per fold
_PER_TILE_SAMPLE = 256  # pixels each tile offers to that sample
_STATS_STRIDE = 4  # statistics use every 4th pixel in each direction


@dataclass
class TileSummary:
    tile_id: str
    fold: int
    rows: dict[str, int]
    count: np.ndarray  # (C,) valid pixels
    total: np.ndarray  # (C,) sum
    m2: np.ndarray  # (C,) sum of squared deviations from the tile's own mean
    keys: np.ndarray  # (S,) random keys of the sampled pixels
    values: np.ndarray  # (S, C) their values

    def to_json(self) -> str:
        def enc(a: np.ndarray) -> str:
            return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()

        return json.dumps(
            {
                "tile_id": self.tile_id,
                "fold": self.fold,
                "rows": self.rows,
                "count": enc(self.count.astype(np.float64)),
                "total": enc(self.total.astype(np.float64)),
                "m2": enc(self.m2.astype(np.float64)),
                "keys": enc(self.keys.astype(np.float64)),
                "values": enc(self.values.astype(np.float32)),
                "shape": list(self.values.shape),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "TileSummary":
        d = json.loads(text)

        def dec(key: str, dtype: type) -> np.ndarray:
            return np.frombuffer(base64.b64decode(d[key]), dtype=dtype)

        return cls(
            d["tile_id"],
            d["fold"],
            d["rows"],
            dec("count", np.float64),
            dec("total", np.float64),
            dec("m2", np.float64),
            dec("keys", np.float64),
            dec("values", np.float32).reshape(d["shape"]),
        )


@dataclass
class Stats:
    """Mergeable per-channel statistics of a set of tiles.

    The quantile sample is merged lazily: offered pixels are buffered and cut back to the
    smallest keys once the buffers hold a quarter more than the cap (or when read), so adding
    a tile costs the size of its own sample, not of the sample so far. Cutting back sorts
    the keys only and gathers the kept values into one new array, so merging several
    folds' samples never holds a copy of all of them. Values stay ``float32``, as offered.
    """

    count: np.ndarray
    total: np.ndarray
    m2: np.ndarray
    tiles: int = 0
    _keys: list[np.ndarray] = field(default_factory=list, repr=False)
    _values: list[np.ndarray] = field(default_factory=list, repr=False)
    _held: int = 0  # pixels in the buffers

    @classmethod
    def empty(cls, channels: int) -> "Stats":
        z = np.zeros(channels, np.float64)
        stats = cls(z.copy(), z.copy(), z.copy())
        stats.add_sample(np.empty(0), np.empty((0, channels), np.float32))
        return stats

    @property
    def keys(self) -> np.ndarray:
        """Random keys of the quantile sample (the smallest of all offered)."""
        self._compact()
        return self._keys[0]

    @property
    def values(self) -> np.ndarray:
        """``(S, C)`` values of the quantile sample."""
        self._compact()
        return self._values[0]

    def add(self, s: "Stats | TileSummary") -> None:
        # Chan et al.'s pairwise update: exact and stable, unlike sums of squares.
        n_a, n_b = self.count, s.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.where(n_b > 0, s.total / n_b, 0) - np.where(n_a > 0, self.total / n_a, 0)
            self.m2 = self.m2 + s.m2 + np.where(n > 0, delta**2 * n_a * n_b / n, 0)
        self.count = n
        self.total = self.total + s.total
        self.tiles += s.tiles if isinstance(s, Stats) else 1
        self.add_sample(s.keys, s.values)

    def add_sample(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Merge pixels into the quantile sample, keeping the smallest random keys."""
        if len(keys) == 0 and self._keys:
            return
        self._keys.append(keys)
        self._values.append(values.astype(np.float32, copy=False))
        self._held += len(keys)
        if self._held > _QUANTILE_SAMPLE + _QUANTILE_SAMPLE // 4:
            self._compact()

    def _compact(self) -> None:
        if len(self._keys) == 1 and self._held <= _QUANTILE_SAMPLE:
            return
        keys = np.concatenate(self._keys)
        keep = np.argsort(keys, kind="stable")[:_QUANTILE_SAMPLE]
        # Gather the kept rows part by part into one array (no copy of all the parts).
        starts = np.cumsum([0] + [len(k) for k in self._keys])
        part = np.searchsorted(starts, keep, side="right") - 1
        values = np.empty((len(keep), self._values[0].shape[1]), np.float32)
        for i, chunk in enumerate(self._values):
            rows = part == i
            values[rows] = chunk[keep[rows] - starts[i]]
        self._keys, self._values, self._held = [keys[keep]], [values], len(keep)

    def summary(self, names: Sequence[str]) -> dict[str, Any]:
        n = np.maximum(self.count, 1)
        mean = self.total / n
        std = np.sqrt(self.m2 / n)
        q01 = q99 = np.full(len(names), np.nan)
        if len(self.values):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channel: NaN quantile
                # in float64, as before the sample was kept in float32: the same figures
                q01, q99 = np.nanquantile(self.values.astype(np.float64), [0.01, 0.99], axis=0)

        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else round(float(x), 6)

        return {
            "tiles": self.tiles,
            "channels": {
                name: {
                    "mean": num(mean[i]) if self.count[i] else None,
                    "std": num(std[i]) if self.count[i] else None,
                    "q01": num(q01[i]),
                    "q99": num(q99[i]),
                    "valid_pixels": int(self.count[i]),
                }
                for i, name in enumerate(names)
            },
        }


def stats_pixels(shape: tuple[int, int]) -> np.ndarray:
    """Flat indices of the pixels statistics are computed on: every 4th pixel each way,
    1/16 of the work for statistics that thousands of tiles estimate to far better than
    the quantile sample's own precision."""
    h, w = shape
    rows = np.arange(0, h, _STATS_STRIDE, dtype=np.int64)
    cols = np.arange(0, w, _STATS_STRIDE, dtype=np.int64)
    return (rows[:, None] * w + cols[None, :]).reshape(-1)


def summarise(
    tile_id: str, fold: int, values: np.ndarray, kind: np.ndarray, seed: int
) -> TileSummary:
    """One tile's sums, row counts and offered quantile sample.

    Args:
        tile_id: seeds the quantile sample (with ``seed``).
        fold: the tile's fold.
        values: ``(C, N)`` channel values at the tile's :func:`stats_pixels`.
        kind: the kinds of its sampled rows.
        seed: the run's seed.
    """
    flat = values.astype(np.float64)
    valid = ~np.isnan(flat)
    count = valid.sum(axis=1)
    values = np.where(valid, flat, 0.0)
    total = values.sum(axis=1)
    mean = total / np.maximum(count, 1)
    deviation = np.where(valid, values - mean[:, None], 0.0)
    rng = tile_rng(seed + 1, tile_id)
    pick = rng.choice(flat.shape[1], min(_PER_TILE_SAMPLE, flat.shape[1]), replace=False)
    return TileSummary(
        tile_id=tile_id,
        fold=fold,
        rows={k: int(np.count_nonzero(kind == i)) for i, k in enumerate(KINDS)},
        count=count.astype(np.float64),
        total=total,
        m2=np.einsum("ij,ij->i", deviation, deviation),
        keys=rng.random(len(pick)),
        values=flat[:, pick].T.astype(np.float32),
    )


class Collector:
    """The summaries of a build's tiles, with memory flat in the number of tiles.

    Per tile only sums and row counts stay in memory; the pixel samples go straight into
    each fold's bounded bottom-k sample.
    """

    def __init__(self, k: int, channels: int) -> None:
        self.channels = channels
        self.summaries: list[TileSummary] = []
        self.samples = {f: Stats.empty(channels) for f in range(k)}

    def keep(self, summary: TileSummary) -> None:
        self.samples[summary.fold].add_sample(summary.keys, summary.values)
        self.summaries.append(
            dataclasses.replace(
                summary, keys=np.empty(0), values=np.empty((0, self.channels), np.float32)
            )
        )


def normalisation(
    summaries: list[TileSummary], per_fold: dict[int, Stats], names: list[str]
) -> dict[str, Any]:
    """The statistics of all train tiles and of each "all folds but k" set.

    ``summaries`` are merged in the order given (tile-id order keeps the result independent
    of completion order) into ``per_fold``, which is updated in place.
    """
    k = len(per_fold)
    for s in summaries:
        per_fold[s.fold].add(s)
    everything = Stats.empty(len(names))
    for stats in per_fold.values():
        everything.add(stats)
    without = {}
    for f in range(k):
        rest = Stats.empty(len(names))
        for g, stats in per_fold.items():
            if g != f:
                rest.add(stats)
        without[str(f)] = rest.summary(names)
    return {"train": everything.summary(names), "without_fold": without}
