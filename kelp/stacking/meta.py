"""Meta-models: fuse per-pixel base-model logits into one kelp probability.

All share one contract (scikit-learn style): ``fit(X, y, sample_weight)`` returns self,
``predict_logit(X)`` returns the fused logit, where ``X`` is ``(N, F)`` float32 per-pixel
features from :func:`meta_features` and ``y`` 0/1.

- ``average``: a weighted average of the base logits plus an offset, the weights
  non-negative and summing to 1 (a softmax of free parameters), fit by weighted log-loss.
  The simplest fusion that still learns how much to trust each model.
- ``logistic`` (default): logistic regression on the base logits: weights of any sign and
  an intercept, so it also calibrates; L2-regularised.
- ``lightgbm``: gradient-boosted trees on the base logits plus 3x3 and 7x7 neighbourhood
  means and maxima of each, and the DEM land mask: it can learn spatial context (a lone
  bright pixel vs a bed) that neither base model used.
"""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage, optimize
from sklearn.linear_model import LogisticRegression

from kelp.registry import Registry
from kelp.stacking.config import MetaName

__all__ = ["MetaModel", "create_meta", "feature_names", "meta_features"]

_WINDOWS = (3, 7)


def meta_features(logits: np.ndarray, land: np.ndarray, spatial: bool) -> np.ndarray:
    """Per-pixel meta-model inputs of one tile.

    Args:
        logits: ``(M, H, W) float32`` base-model logits.
        land: ``(H, W) bool`` valid DEM > 0.
        spatial: add neighbourhood aggregates and the land mask (LightGBM meta-model).

    Returns:
        ``(F, H, W) float32``: the logits, then (if ``spatial``) per model the 3x3 mean,
        3x3 max, 7x7 mean and 7x7 max, then the land mask.
    """
    if not spatial:
        return logits.astype(np.float32, copy=False)
    planes = [logits]
    for m in logits:
        for size in _WINDOWS:
            planes.append(ndimage.uniform_filter(m, size, mode="nearest")[None])
            planes.append(ndimage.maximum_filter(m, size, mode="nearest")[None])
    planes.append(land.astype(np.float32)[None])
    return np.concatenate(planes).astype(np.float32)


def feature_names(models: Sequence[str], spatial: bool) -> list[str]:
    """Names of the :func:`meta_features` planes."""
    names = [f"{m}_logit" for m in models]
    if spatial:
        for m in models:
            for size in _WINDOWS:
                names += [f"{m}_mean{size}", f"{m}_max{size}"]
        names.append("land")
    return names


class MetaModel:
    """Base of the meta-models."""

    name: ClassVar[MetaName]
    spatial: ClassVar[bool] = False

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> "MetaModel":
        """Fit on ``(N, F)`` features, 0/1 labels and sampling weights; returns self."""
        raise NotImplementedError

    def predict_logit(self, X: np.ndarray) -> np.ndarray:
        """``(N,)`` float32 fused logit."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-ready learned parameters (for the run's record)."""
        return {}


class WeightedAverage(MetaModel):
    """``sum_i w_i z_i + b`` with ``w = softmax(a)``, fit by weighted log-loss."""

    name = "average"

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> "WeightedAverage":
        z = X.astype(np.float64)
        y = y.astype(np.float64)
        w = sample_weight / sample_weight.sum()

        def loss(params: np.ndarray) -> float:
            a, b = params[:-1], params[-1]
            weights = np.exp(a - a.max())
            weights /= weights.sum()
            s = z @ weights + b
            return float(np.sum(w * (np.logaddexp(0, s) - y * s)))

        start = np.zeros(z.shape[1] + 1)
        result = optimize.minimize(loss, start, method="L-BFGS-B")
        a = result.x[:-1]
        self.weights_ = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        self.offset_ = float(result.x[-1])
        return self

    def predict_logit(self, X: np.ndarray) -> np.ndarray:
        return (X.astype(np.float64) @ self.weights_ + self.offset_).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"weights": self.weights_.round(6).tolist(), "offset": round(self.offset_, 6)}


class Logistic(MetaModel):
    """L2 logistic regression on the base logits."""

    name = "logistic"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> "Logistic":
        self.model_ = LogisticRegression(C=1.0, max_iter=1000, random_state=self.seed)
        self.model_.fit(X, y, sample_weight=sample_weight)
        return self

    def predict_logit(self, X: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(X).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "coef": self.model_.coef_[0].round(6).tolist(),
            "intercept": round(float(self.model_.intercept_[0]), 6),
        }


class LightGBMMeta(MetaModel):
    """LightGBM on the logits, their neighbourhood aggregates and the land mask."""

    name = "lightgbm"
    spatial = True

    def __init__(self, params: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.params = dict(params or {})
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> "LightGBMMeta":
        import lightgbm

        self.model_ = lightgbm.LGBMClassifier(random_state=self.seed, n_jobs=-1, **self.params)
        self.model_.fit(X, y, sample_weight=sample_weight)
        return self

    def predict_logit(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict(X, raw_score=True), np.float32)

    def describe(self) -> dict[str, Any]:
        return {"params": self.params, "n_features": int(self.model_.n_features_in_)}


# name -> factory(seed, lightgbm params); the names are those of MetaName (a test checks).
_META: Registry[Callable[[int, dict[str, Any] | None], MetaModel]] = Registry("meta-model")
_META.register("average", lambda seed, lightgbm: WeightedAverage())
_META.register("logistic", lambda seed, lightgbm: Logistic(seed))
_META.register("lightgbm", lambda seed, lightgbm: LightGBMMeta(lightgbm, seed))


def create_meta(name: str, seed: int = 0, lightgbm: dict[str, Any] | None = None) -> MetaModel:
    """A meta-model by name.

    Raises:
        ConfigError: an unknown name; the message suggests close ones and lists all.
    """
    return _META.get(name)(seed, lightgbm)
