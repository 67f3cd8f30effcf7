"""XGBoost gradient-boosted trees, saved as XGBoost's UBJSON model (``model.ubj``)."""

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb

from kelp.tabular.config import ModelName
from kelp.tabular.models.base import EvalSet, TreeModel

__all__ = ["XGBoostModel"]


class XGBoostModel(TreeModel):
    """XGBoost (histogram trees) on sampled pixel rows.

    Defaults and why:

    - ``tree_method="hist"``, ``max_bin`` 256: the fast exact-enough method, and the only
      one on GPU (XGBoost >= 3.1 selects the GPU with ``device="cuda"``).
    - ``learning_rate`` 0.1 with early stopping on log-loss (at most ``max_rounds``).
    - ``max_depth`` 8, ``min_child_weight`` 1: depth-wise trees deep enough for the
      index x context interactions (an index only means kelp near the coast, off land);
      ``min_child_weight`` is in hessian units, ``p(1-p)`` per row, so leaves of confident
      rows may be small while uncertain ones need a few rows.
    - ``subsample`` / ``colsample_bytree`` 0.8, ``reg_lambda`` 1: as for LightGBM.
    - no ``scale_pos_weight``: see ``TabularConfig.sample_weight``.

    Dense prediction runs on the CPU with ``inplace_predict`` (no DMatrix copy).
    """

    name: ClassVar[ModelName] = "xgboost"
    library: ClassVar[str] = "xgboost"
    file_name: ClassVar[str] = "model.ubj"
    defaults: ClassVar[dict[str, Any]] = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "learning_rate": 0.1,
        "max_depth": 8,
        "min_child_weight": 1.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "max_bin": 256,
        "verbosity": 1,
    }

    def _runtime_params(self) -> dict[str, Any]:
        return {"device": self.device, "nthread": self.threads, "seed": self.seed}

    def _rounds(self) -> int:
        return self.max_rounds

    def _fit(
        self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, eval_set: EvalSet | None
    ) -> None:
        params = self.library_params()
        names = list(self.feature_names_in_)
        max_bin = int(params.get("max_bin", 256))
        train = xgb.QuantileDMatrix(
            x, y, weight=weight, feature_names=names, nthread=self.threads, max_bin=max_bin
        )
        evals = []
        stopping = None
        if eval_set is not None and self.early_stopping_rounds > 0:
            ex, ey, ew = eval_set
            stop = xgb.QuantileDMatrix(
                ex, ey, weight=ew, feature_names=names, ref=train, nthread=self.threads
            )
            evals.append((stop, "stop"))
            stopping = self.early_stopping_rounds
        booster = xgb.train(
            params,
            train,
            num_boost_round=self._rounds(),
            evals=evals,
            early_stopping_rounds=stopping,
            verbose_eval=False,
        )
        best = booster.attr("best_iteration")
        rounds = int(best) + 1 if best is not None else booster.num_boosted_rounds()
        self.best_iteration_ = rounds
        self._booster = booster[:rounds]  # keep only the rounds early stopping chose
        self._cpu_predictor()

    def _cpu_predictor(self) -> None:
        # A booster trained on the GPU would copy each numpy chunk to the device and warn
        # about the mismatch; dense maps are predicted on the CPU.
        self._booster.set_param({"device": "cpu", "nthread": self.threads})
        self._predict_threads = self.threads

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if self._predict_threads != self.threads:  # n_jobs changed since: the booster keeps it
            self._booster.set_param({"nthread": self.threads})
            self._predict_threads = self.threads
        return np.asarray(self._booster.inplace_predict(x, validate_features=False), np.float32)

    def _importance(self) -> np.ndarray:
        score = self._booster.get_score(importance_type="total_gain")
        return np.array([score.get(n, 0.0) for n in self.feature_names_in_], np.float64)

    def _save(self, path: Path) -> None:
        path.write_bytes(bytes(self._booster.save_raw(raw_format="ubj")))

    def _load(self, path: Path) -> None:
        self._booster = xgb.Booster()
        self._booster.load_model(bytearray(path.read_bytes()))
        if list(self._booster.feature_names or []) != list(self.feature_names_in_):
            raise ValueError(f"{path}: feature names differ from those in its model.json")
        self._cpu_predictor()
