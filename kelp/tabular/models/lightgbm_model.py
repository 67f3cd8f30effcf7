"""LightGBM gradient-boosted trees, saved as LightGBM's text model (``model.txt``)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np

from kelp.tabular.config import ModelName
from kelp.tabular.models.base import EvalSet, TreeModel

__all__ = ["LightGBMModel"]


class LightGBMModel(TreeModel):
    """LightGBM on sampled pixel rows (kelp is ~1% of the pixels by weight).

    Defaults and why:

    - ``learning_rate`` 0.1 with early stopping (at most ``max_rounds``): fast to train on
      a few million rows, early stopping picks the round count.
    - ``num_leaves`` 63, ``min_data_in_leaf`` 100: pixels of one bed are strongly
      correlated (neighbours share smoothed filter values), so small leaves memorise single
      beds; 100 rows still resolves a thin bed edge.
    - ``feature_fraction`` 0.8, ``bagging_fraction`` 0.8 every round, ``lambda_l2`` 1:
      decorrelates rounds and regularises the many correlated index/filter columns.
    - no ``is_unbalance``/``scale_pos_weight``: see ``TabularConfig.sample_weight``.
    - ``deterministic`` and ``force_row_wise``: the same seed and thread count give the same
      model.

    On ``device="cuda"`` LightGBM's OpenCL learner (``device_type="gpu"``) is used; the
    PyPI wheel has no CUDA learner.
    """

    name: ClassVar[ModelName] = "lightgbm"
    library: ClassVar[str] = "lightgbm"
    file_name: ClassVar[str] = "model.txt"
    defaults: ClassVar[dict[str, Any]] = {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": 0.1,
        "num_leaves": 63,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_bin": 255,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }

    def _runtime_params(self) -> dict[str, Any]:
        device = "gpu" if self.device == "cuda" else "cpu"
        return {"device_type": device, "num_threads": self.threads, "seed": self.seed}

    def _fit(
        self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, eval_set: EvalSet | None
    ) -> None:
        params = self.library_params()
        names = list(self.feature_names_in_)
        train = lgb.Dataset(x, y, weight=weight, feature_name=names, free_raw_data=True)
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Callable[..., Any]] = []
        if eval_set is not None and self.early_stopping_rounds > 0:
            ex, ey, ew = eval_set
            valid_sets.append(lgb.Dataset(ex, ey, weight=ew, reference=train))
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        booster = lgb.train(
            params,
            train,
            num_boost_round=self.max_rounds,
            valid_sets=valid_sets,
            valid_names=["stop"] * len(valid_sets),
            callbacks=callbacks,
        )
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self._booster = booster

    def _predict(self, x: np.ndarray) -> np.ndarray:
        p = self._booster.predict(x, num_iteration=self.best_iteration_, num_threads=self.threads)
        return np.asarray(p, np.float32)

    def _importance(self) -> np.ndarray:
        return np.asarray(
            self._booster.feature_importance("gain", iteration=self.best_iteration_), np.float64
        )

    def _save(self, path: Path) -> None:
        path.write_text(self._booster.model_to_string(num_iteration=self.best_iteration_))

    def _load(self, path: Path) -> None:
        self._booster = lgb.Booster(model_str=path.read_text())
        found = self._booster.feature_name()
        if found != list(self.feature_names_in_):
            raise ValueError(f"{path}: feature names differ from those in its model.json")
