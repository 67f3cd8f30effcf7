"""The contract every tree model keeps: scikit-learn-style fit/predict_proba, save/load.

A saved model is a folder: the library's native file beside ``model.json``, which names the
model, the library and its version, the feature names in order, the parameters and the
boosting round kept by early stopping. :meth:`TreeModel.load` rebuilds the model from that
folder alone and predicts exactly as the model that was saved.
"""

import abc
import json
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from kelp import __version__
from kelp._files import atomic_path
from kelp.artifacts import read_json
from kelp.cluster import worker_threads
from kelp.devices import ResolvedDevice

__all__ = ["MODEL_JSON", "EvalSet", "TreeModel", "available_cores", "read_model_info"]

MODEL_JSON = "model.json"

EvalSet = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""Early-stopping rows: ``(X (M, F) float32, y (M,) 0/1, weight (M,) float32 or None)``."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's total); inside a
    Dask worker's task, that worker's threads."""
    threads = worker_threads()
    if threads is not None:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _matrix(x: np.ndarray, name: str = "X") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, features) array, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(y: np.ndarray, rows: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (rows,):
        raise ValueError(f"y must have shape ({rows},) to match X, got {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold only 0 (no kelp) and 1 (kelp)")
    return y.astype(np.float32)


class TreeModel(abc.ABC):
    """A binary per-pixel classifier (positive class = kelp) over a float32 feature matrix.

    Parameters go to the library as ``defaults`` (chosen per model, documented on each
    subclass), then the device, thread and seed settings, then ``params`` (the user's
    overrides, which win).

    Args:
        params: library parameter overrides.
        device: ``"cpu"`` or ``"cuda"`` (already resolved, see ``kelp.tabular.devices``).
        n_jobs: CPU threads; ``None`` = every available core.
        seed: seeds the library's randomness.
        max_rounds: most boosting rounds (boosted models).
        early_stopping_rounds: rounds without improvement before stopping; 0 = never.

    Attributes:
        feature_names_in_: feature names seen by ``fit``, in column order.
        n_features_in_: number of features.
        best_iteration_: boosting rounds kept (trees for the forest).
        inputs: what the model was trained from (see :meth:`save`).
    """

    name: ClassVar[str]
    library: ClassVar[str]
    file_name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]]
    uses_early_stopping: ClassVar[bool] = True

    feature_names_in_: tuple[str, ...]
    n_features_in_: int
    best_iteration_: int

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        device: ResolvedDevice = "cpu",
        n_jobs: int | None = None,
        seed: int = 0,
        max_rounds: int = 1000,
        early_stopping_rounds: int = 50,
    ) -> None:
        self.params = dict(params or {})
        self.device: ResolvedDevice = device
        self.n_jobs = n_jobs
        self.seed = seed
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.inputs: dict[str, Any] = {}

    @property
    def threads(self) -> int:
        """CPU threads the library is given."""
        return self.n_jobs or available_cores()

    def library_params(self) -> dict[str, Any]:
        """The parameters handed to the library, overrides applied.

        Returns:
            ``defaults``, then device/thread/seed settings, then ``params``.
        """
        return {**self.defaults, **self._runtime_params(), **self.params}

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        *,
        eval_set: EvalSet | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> Self:
        """Train on ``X (N, F) float32`` (NaN = missing) and 0/1 labels ``y (N,)``.

        Args:
            X: features.
            y: labels.
            sample_weight: ``(N,)`` row weights, or ``None``.
            eval_set: rows for early stopping; ``None`` (or a model without early stopping)
                trains ``max_rounds`` rounds.
            feature_names: the F column names (default ``f0, f1, ...``).

        Returns:
            ``self``.

        Raises:
            ValueError: bad shapes, labels other than 0/1, or no positive row.
        """
        x = _matrix(X)
        labels = _labels(y, len(x))
        if not labels.any():
            raise ValueError(f"{self.name}: no positive (kelp) row to learn from")
        names = tuple(feature_names) if feature_names is not None else None
        if names is None:
            names = tuple(f"f{i}" for i in range(x.shape[1]))
        if len(names) != x.shape[1]:
            raise ValueError(f"{len(names)} feature names for {x.shape[1]} columns of X")
        weight = None if sample_weight is None else np.asarray(sample_weight, np.float32)
        if eval_set is not None:
            ex = _matrix(eval_set[0], "eval X")
            eval_set = (ex, _labels(eval_set[1], len(ex)), eval_set[2])
        self.feature_names_in_ = names
        self.n_features_in_ = x.shape[1]
        self._fit(x, labels, weight, eval_set)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities.

        Args:
            X: ``(N, F) float32`` features in the training column order.

        Returns:
            ``(N, 2) float32``: P(no kelp), P(kelp).

        Raises:
            ValueError: the model is not fitted, or X has the wrong number of columns.
        """
        p = self.predict_kelp(X)
        return np.column_stack([1 - p, p])

    def predict_kelp(self, X: np.ndarray) -> np.ndarray:
        """P(kelp) only, ``(N,) float32`` in [0, 1] (what dense prediction uses).

        Raises:
            ValueError: the model is not fitted, or X has the wrong number of columns.
        """
        if not hasattr(self, "n_features_in_"):
            raise ValueError(f"this {self.name} model is not fitted: call fit() or load()")
        x = _matrix(X)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, the {self.name} model expects {self.n_features_in_}"
            )
        return np.clip(self._predict(x), 0, 1).astype(np.float32)

    def predict(self, X: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """``(N,) uint8`` kelp mask: P(kelp) >= ``threshold``."""
        return (self.predict_kelp(X) >= threshold).astype(np.uint8)

    @property
    def feature_importances_(self) -> np.ndarray:
        """``(F,) float64`` importances summing to 1 (all 0 for a model without splits)."""
        raw = np.asarray(self._importance(), np.float64)
        total = raw.sum()
        return raw / total if total > 0 else raw

    def save(self, folder: str | os.PathLike[str], inputs: Mapping[str, Any] | None = None) -> Path:
        """Write the native model file and ``model.json`` into ``folder`` (atomically).

        Args:
            folder: created if missing.
            inputs: what the model was trained from (feature config, hashes), kept in
                ``model.json`` under ``"inputs"`` and restored as :attr:`inputs` on load.

        Returns:
            The folder.
        """
        if inputs is not None:
            self.inputs = dict(inputs)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / self.file_name) as tmp:
            self._save(tmp)
        info = {
            "model": self.name,
            "file": self.file_name,
            "library": self.library,
            "library_version": metadata.version(self.library),
            "kelp_version": __version__,
            "feature_names": list(self.feature_names_in_),
            "best_iteration": self.best_iteration_,
            "trained_on": self.device,
            "seed": self.seed,
            "overrides": self.params,
            "library_params": self.library_params(),
            "inputs": self.inputs,
        }
        with atomic_path(folder / MODEL_JSON) as tmp:
            tmp.write_text(json.dumps(info, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Self:
        """Rebuild a saved model; it predicts on the CPU whatever it trained on.

        Raises:
            FileNotFoundError: no ``model.json`` or native file in ``folder``.
            ValueError: the folder holds another model.
        """
        folder = Path(folder)
        info = read_model_info(folder)
        if info["model"] != cls.name:
            raise ValueError(f"{folder} holds a {info['model']} model, not {cls.name}")
        path = folder / info["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the model in {folder} is incomplete")
        model = cls(info["overrides"], seed=info["seed"])
        model.feature_names_in_ = tuple(info["feature_names"])
        model.n_features_in_ = len(model.feature_names_in_)
        model.best_iteration_ = info["best_iteration"]
        model.inputs = info.get("inputs", {})
        model._load(path)
        return model

    @abc.abstractmethod
    def _runtime_params(self) -> dict[str, Any]:
        """Device, thread and seed parameters in the library's vocabulary."""

    @abc.abstractmethod
    def _fit(
        self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, eval_set: EvalSet | None
    ) -> None:
        """Train; set ``best_iteration_``."""

    @abc.abstractmethod
    def _predict(self, x: np.ndarray) -> np.ndarray:
        """P(kelp) for C-contiguous float32 rows."""

    @abc.abstractmethod
    def _importance(self) -> np.ndarray:
        """Unnormalised importance per feature (gain where the library has it)."""

    @abc.abstractmethod
    def _save(self, path: Path) -> None:
        """Write the native file (the path has a temporary name)."""

    @abc.abstractmethod
    def _load(self, path: Path) -> None:
        """Read the native file."""


def read_model_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``model.json`` of a saved model folder.

    Raises:
        FileNotFoundError: no ``model.json`` (says which command writes it).
    """
    path = Path(folder) / MODEL_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train the model with `kelp train-trees`")
    return read_json(path, "retrain it with `kelp train-trees`")
