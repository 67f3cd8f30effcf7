"""The typed configuration of ``kelp train-trees`` (TOML table ``[tabular]``).

Example::

    [tabular]
    models = ["lightgbm", "xgboost"]
    device = "auto"
    max_rounds = 2000
    early_stopping_rounds = 100
    [tabular.params.lightgbm]
    num_leaves = 127

The training procedure lives here; each library's own hyperparameters have defaults in
its model class (``kelp.tabular.models``) and are overridden key by key from ``params``.
"""

from typing import Annotated, Any

from pydantic import Field, field_validator

from kelp.config import Frozen
from kelp.devices import Device
from kelp.registry import one_of
from kelp.tabular.registry import MODELS

__all__ = ["MODEL_NAMES", "ModelName", "TabularConfig"]

#: A registered tree model's name; a config naming another gets the "unknown model" message.
ModelName = Annotated[str, one_of("model", MODELS)]
#: Every tree model, in the default training order (from :data:`kelp.tabular.registry.MODELS`).
MODEL_NAMES: tuple[ModelName, ...] = MODELS.names()


class TabularConfig(Frozen):
    """How the per-pixel tree models are trained.

    Attributes:
        models: which models, each trained on every requested fold.
        device: ``auto`` (a GPU where the library can use one, else the CPU), ``cpu`` or
            ``cuda`` (an error where no GPU is usable).
        max_rounds: most boosting rounds (LightGBM, XGBoost, CatBoost). 1000 at learning
            rate 0.1 leaves room for early stopping to decide; the forest's size is
            ``params.random_forest.num_parallel_tree``.
        early_stopping_rounds: stop boosting after this many rounds without a better
            log-loss on the inner early-stopping tiles; 0 trains ``max_rounds`` rounds.
        stop_fraction: share of the training folds' areas held back for early stopping
            (whole areas, never fold k's tiles).
        sample_weight: weight rows by the table's ``weight`` column (the inverse of each
            row's sampling probability, ~1 for kelp and its ring, ~100 for random rows of a
            350 px tile). Off by default: the weighted loss is then an unbiased estimate of
            the loss over every pixel (calibrated probabilities), but a few heavy rows
            dominate it, and on the 200-tile synthetic set (5 folds) it lowered OOF Dice at
            the best threshold for LightGBM and XGBoost by 0.05 (0.79-0.80 vs 0.84), for the
            forest by 0.006, while CatBoost gained 0.013 (0.847 vs 0.833). Unweighted, the
            table over-represents kelp, so probabilities run high (best thresholds ~0.8):
            the threshold is chosen on out-of-fold maps and the stacker recalibrates. No
            class re-weighting either (``scale_pos_weight``/``is_unbalance``): it would
            only move that threshold.
        n_jobs: CPU threads per model; ``None`` = every core this process may use.
        seed: seeds the inner split and every model.
        chunk_pixels: pixels predicted at once in dense prediction (bounds memory).
        max_rows: most table rows a model is fit on per fold (and, separately, most
            early-stopping rows): where a fold's training tiles hold more, a seeded uniform
            subsample of exactly ``max_rows`` rows is drawn (seed, fold), each kept row's
            ``weight`` divided by its probability ``max_rows / rows`` (so the weighted loss
            still estimates the loss over every sampled pixel), and ``metrics.json``
            records rows available and kept. Only the fold's tiles are read (their Parquet
            files), never the whole table: memory is bounded by the cap, not the dataset.
            ``None`` = every row.
        params: per-model parameter overrides passed to the library as given, e.g.
            ``{"lightgbm": {"num_leaves": 127}}``.
    """

    models: tuple[ModelName, ...] = MODEL_NAMES
    device: Device = "auto"
    max_rounds: Annotated[int, Field(ge=1)] = 1000
    early_stopping_rounds: Annotated[int, Field(ge=0)] = 50
    stop_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.2
    sample_weight: bool = False
    n_jobs: Annotated[int, Field(ge=1)] | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    chunk_pixels: Annotated[int, Field(ge=1024)] = 1 << 18
    max_rows: Annotated[int, Field(ge=1)] | None = None
    params: dict[ModelName, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _some_models_once(cls, models: tuple[ModelName, ...]) -> tuple[ModelName, ...]:
        if not models:
            raise ValueError(f"list at least one model of {list(MODEL_NAMES)}")
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:
            raise ValueError(f"model(s) {repeated} listed twice")
        return models
