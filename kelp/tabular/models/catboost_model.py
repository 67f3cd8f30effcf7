"""CatBoost oblivious trees, saved as CatBoost's binary model (``model.cbm``)."""

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from catboost import CatBoostClassifier, Pool

from kelp.tabular.config import ModelName
from kelp.tabular.models.base import EvalSet, TreeModel

__all__ = ["CatBoostModel"]


class CatBoostModel(TreeModel):
    """CatBoost on sampled pixel rows.

    Defaults and why:

    - ``depth`` 6 (CatBoost's own default): symmetric trees of depth 6 already model the
      interactions we need and predict a 350x350 tile far faster than deeper ones.
    - ``learning_rate`` 0.1 with early stopping on log-loss (at most ``max_rounds``).
    - ``l2_leaf_reg`` 3, ``border_count`` 128 (the CPU default, set explicitly so CPU and
      GPU runs bin alike).
    - ``allow_writing_files`` off: CatBoost would otherwise write ``catboost_info/`` into
      the working directory.
    - no ``auto_class_weights``: see ``TabularConfig.sample_weight``.

    GPU training (``task_type="GPU"``) is documented by CatBoost as non-deterministic.
    """

    name: ClassVar[ModelName] = "catboost"
    library: ClassVar[str] = "catboost"
    file_name: ClassVar[str] = "model.cbm"
    defaults: ClassVar[dict[str, Any]] = {
        "loss_function": "Logloss",
        "eval_metric": "Logloss",
        "learning_rate": 0.1,
        "depth": 6,
        "l2_leaf_reg": 3.0,
        "border_count": 128,
        "allow_writing_files": False,
        "verbose": False,
    }

    def _runtime_params(self) -> dict[str, Any]:
        return {
            "task_type": "GPU" if self.device == "cuda" else "CPU",
            "thread_count": self.threads,
            "random_seed": self.seed,
            "iterations": self.max_rounds,
        }

    def _fit(
        self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, eval_set: EvalSet | None
    ) -> None:
        names = list(self.feature_names_in_)
        model = CatBoostClassifier(**self.library_params())
        train = Pool(x, y, weight=weight, feature_names=names)
        stop = None
        if eval_set is not None and self.early_stopping_rounds > 0:
            ex, ey, ew = eval_set
            stop = Pool(ex, ey, weight=ew, feature_names=names)
        model.fit(
            train,
            eval_set=stop,
            early_stopping_rounds=self.early_stopping_rounds if stop is not None else None,
            use_best_model=stop is not None,
        )
        self.best_iteration_ = int(model.tree_count_)
        self._model = model

    def _predict(self, x: np.ndarray) -> np.ndarray:
        p = self._model.predict(x, prediction_type="Probability", thread_count=self.threads)
        return np.asarray(p[:, 1], np.float32)

    def _importance(self) -> np.ndarray:
        return np.asarray(
            self._model.get_feature_importance(type="PredictionValuesChange"), np.float64
        )

    def _save(self, path: Path) -> None:
        self._model.save_model(str(path), format="cbm")

    def _load(self, path: Path) -> None:
        self._model = CatBoostClassifier()
        self._model.load_model(str(path), format="cbm")
        if list(self._model.feature_names_) != list(self.feature_names_in_):
            raise ValueError(f"{path}: feature names differ from those in its model.json")
