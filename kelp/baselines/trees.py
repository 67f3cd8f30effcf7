"""The two published per-pixel tree recipes as estimators: fit on tiles, predict a tile.

:class:`FirstPlace` is Team Epoch's LightGBM, :class:`SecondPlace` xultaeculcis's
XGBoost; features and rows are those of :mod:`kelp.baselines.features`. Both early-stop on
``stop_tiles``: tiles of *other areas* than the fitting tiles, which the caller draws from
the training folds only (:func:`kelp.baselines.run.run_baselines` uses
:func:`kelp.data.split.plan_fold`, as kelp's own trees do). Without stop tiles they train
their full round count.

Rows are gathered one tile at a time in float32 (each tile's generator comes from
``(seed, tile_id)`` only, :func:`kelp.features.sampling.tile_rng`), so the sample does not
depend on the order of the tiles, and a fit never holds more than its rows plus one tile.
"""

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar, Self

import numpy as np

from kelp.baselines.features import (
    FIRST_PLACE_FEATURES,
    SECOND_PLACE_FEATURES,
    first_place_features,
    second_place_features,
    second_place_pixels,
    uniform_pixels,
)
from kelp.baselines.tiles import row_budget, tile_pixels
from kelp.data.tile import Tile
from kelp.errors import InputError
from kelp.features.sampling import tile_rng
from kelp.tabular.predict import pixel_rows

__all__ = ["DEFAULT_MAX_ROWS", "FirstPlace", "SecondPlace"]

#: Training rows of the 1st-place LightGBM; its early-stopping rows are a quarter of it.
DEFAULT_MAX_ROWS = 8_000_000

_Rows = tuple[np.ndarray, np.ndarray]  # (N, C) float32 features, (N,) uint8 labels


def _library(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        message = f"this baseline needs {module}: `pip install {module}` ({error})"
        raise ImportError(message) from None


def _mask(tile: Tile) -> np.ndarray:
    if tile.mask is None:
        raise InputError(f"tile {tile.tile_id} has no kelp mask: baselines fit on train tiles")
    return tile.mask


def _uniform_rows(tiles: Sequence[Tile], max_rows: int, seed: int) -> _Rows:
    """A uniform sample of at most ``max_rows`` pixels of ``tiles``, preallocated."""
    budget = row_budget(tile_pixels(tiles), max_rows)
    x = np.empty((sum(budget), len(FIRST_PLACE_FEATURES)), np.float32)
    y = np.empty(sum(budget), np.uint8)
    start = 0
    for tile, n_take in zip(tiles, budget, strict=True):
        mask = _mask(tile)
        picked = uniform_pixels(mask.size, n_take, tile_rng(seed, tile.tile_id))
        stop = start + len(picked)
        x[start:stop] = pixel_rows(first_place_features(tile))[picked]
        y[start:stop] = mask.ravel()[picked]
        start = stop
    return x[:start], y[:start]


def _ring_rows(tiles: Sequence[Tile], seed: int, other_fraction: float) -> _Rows:
    """Every kelp and ring pixel of ``tiles`` and ``other_fraction`` of the others."""
    xs, ys = [np.empty((0, len(SECOND_PLACE_FEATURES)), np.float32)], [np.empty(0, np.uint8)]
    for tile in tiles:
        mask = _mask(tile)
        picked = second_place_pixels(mask, tile_rng(seed, tile.tile_id), other_fraction)
        xs.append(pixel_rows(second_place_features(tile))[picked])
        ys.append(mask.ravel()[picked])
    return np.concatenate(xs), np.concatenate(ys)


class _TreeBaseline:
    """What both recipes share: row gathering, the fit record, tile prediction."""

    name: ClassVar[str]
    needs_fit: ClassVar[bool] = True
    feature_names: ClassVar[tuple[str, ...]]
    best_iteration_: int | None = None

    def __init__(self, seed: int, n_jobs: int) -> None:
        self.seed = seed
        self.n_jobs = n_jobs

    def params(self) -> dict[str, Any]:
        """Every parameter, for the record (and the resume key)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k[-1] != "_"}

    def _stack(self, tile: Tile) -> np.ndarray:
        raise NotImplementedError

    def _rows(self, tiles: Sequence[Tile], stop: bool) -> _Rows:
        raise NotImplementedError

    def _train(self, fit: _Rows, stop: _Rows | None) -> int:
        raise NotImplementedError

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, tiles: Sequence[Tile], stop_tiles: Sequence[Tile] = ()) -> Self:
        """Fit on ``tiles``, early-stopping on ``stop_tiles`` (other areas) when given.

        Args:
            tiles: train tiles (with masks) of the training folds; a
                :class:`~kelp.baselines.tiles.TileSet` reads them one at a time.
            stop_tiles: held-out areas of the training folds; empty = no early stopping.

        Returns:
            ``self``, with ``best_iteration_`` (rounds kept) and ``fit_info_``.

        Raises:
            InputError: a tile without a mask, or no kelp pixel among the fitting rows.
        """
        fit = self._rows(tiles, stop=False)
        if not fit[1].any():
            raise InputError(
                f"{self.name}: no kelp pixel in the {len(tiles)} fitting tile(s); nothing to learn"
            )
        stop = self._rows(stop_tiles, stop=True) if len(stop_tiles) else None
        self.best_iteration_ = self._train(fit, stop)
        self.fit_info_: dict[str, Any] = {
            "fit_tiles": len(tiles),
            "fit_rows": len(fit[1]),
            "fit_kelp_rows": int(fit[1].sum()),
            "stop_tiles": len(stop_tiles),
            "stop_rows": 0 if stop is None else len(stop[1]),
            "early_stopping": "on" if stop is not None else "off: no held-out areas",
            "rounds": self.best_iteration_,
        }
        return self

    def predict_proba(self, tile: Tile) -> np.ndarray:
        """``(H, W) float32`` P(kelp) of every pixel of ``tile``."""
        prob = self._predict(pixel_rows(self._stack(tile)))
        return np.asarray(prob, np.float32).reshape(tile.shape)


class FirstPlace(_TreeBaseline):
    """Team Epoch's LightGBM on 11 per-pixel features (1st place, Kelp Wanted).

    LightGBM's defaults (31 leaves, learning rate 0.1), at most ``max_rounds`` rounds,
    early stopping after ``early_stopping_rounds`` rounds without a better log loss on a
    uniform sample of the stop tiles' pixels (at most ``max_rows // 4``). Deterministic:
    ``deterministic`` and ``force_row_wise`` are set, so the same seed and ``n_jobs``
    give the same model.

    Args:
        seed: seeds the pixel sample and LightGBM.
        max_rows: the most training rows, a uniform sample of the fitting tiles' pixels.
        n_jobs: threads.
        max_rounds: boosting rounds at most.
        early_stopping_rounds: patience.
    """

    name = "first_place"
    feature_names = FIRST_PLACE_FEATURES

    def __init__(
        self,
        seed: int = 0,
        max_rows: int = DEFAULT_MAX_ROWS,
        n_jobs: int = 2,
        max_rounds: int = 200,
        early_stopping_rounds: int = 20,
    ) -> None:
        super().__init__(seed, n_jobs)
        self.max_rows = max_rows
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds

    def _stack(self, tile: Tile) -> np.ndarray:
        return first_place_features(tile)

    def _rows(self, tiles: Sequence[Tile], stop: bool) -> _Rows:
        budget = max(self.max_rows // 4, 1) if stop else self.max_rows
        return _uniform_rows(tiles, budget, self.seed)

    def _train(self, fit: _Rows, stop: _Rows | None) -> int:
        lgb = _library("lightgbm")
        params = {
            "objective": "binary",
            "num_leaves": 31,
            "learning_rate": 0.1,
            "seed": self.seed,
            "num_threads": self.n_jobs,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        names = list(self.feature_names)
        train = lgb.Dataset(fit[0], fit[1], feature_name=names, free_raw_data=True)
        valid, callbacks = [], []
        if stop is not None:
            valid.append(lgb.Dataset(stop[0], stop[1], reference=train))
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        self._booster = lgb.train(
            params, train, self.max_rounds, valid_sets=valid, callbacks=callbacks
        )
        return int(self._booster.best_iteration or self._booster.current_iteration())

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(
            self._booster.predict(rows, num_iteration=self.best_iteration_, num_threads=self.n_jobs)
        )


class SecondPlace(_TreeBaseline):
    """xultaeculcis's XGBoost on 22 per-pixel features (2nd place, Kelp Wanted).

    ``XGBClassifier(n_estimators=1000, learning_rate=0.1, tree_method="hist")``, early
    stopping after ``early_stopping_rounds`` rounds on the stop tiles' rows, sampled as the
    fitting rows are (every kelp and ring pixel, ``other_fraction`` of the rest). NaN is
    left to XGBoost's missing-value routing.

    Args:
        seed: seeds the 2 % draw and XGBoost.
        n_jobs: threads.
        n_estimators: boosting rounds at most.
        early_stopping_rounds: patience.
        other_fraction: share of the pixels beyond the ring kept as rows.
    """

    name = "second_place"
    feature_names = SECOND_PLACE_FEATURES

    def __init__(
        self,
        seed: int = 0,
        n_jobs: int = 2,
        n_estimators: int = 1000,
        early_stopping_rounds: int = 50,
        other_fraction: float = 0.02,
    ) -> None:
        super().__init__(seed, n_jobs)
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.other_fraction = other_fraction

    def _stack(self, tile: Tile) -> np.ndarray:
        return second_place_features(tile)

    def _rows(self, tiles: Sequence[Tile], stop: bool) -> _Rows:
        return _ring_rows(tiles, self.seed, self.other_fraction)

    def _train(self, fit: _Rows, stop: _Rows | None) -> int:
        xgb = _library("xgboost")
        self._model = xgb.XGBClassifier(
            n_estimators=self.n_estimators,
            learning_rate=0.1,
            tree_method="hist",
            early_stopping_rounds=self.early_stopping_rounds if stop is not None else None,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )
        eval_set = None if stop is None else [stop]
        self._model.fit(fit[0], fit[1], eval_set=eval_set, verbose=False)
        if stop is None:
            return self.n_estimators
        return int(self._model.best_iteration) + 1

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict_proba(rows)[:, 1])
