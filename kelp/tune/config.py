"""The typed configuration of `kelp tune` (TOML table ``[tune]``).

Example::

    [tune]
    seed = 0
    pruner = "median"
    [tune.trees.lightgbm]
    num_leaves = {low = 15, high = 127, log = true}

The search spaces' keys are those of :mod:`kelp.tune.space`; they are checked when the
config is read, so a misspelt parameter fails before any trial runs.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kelp.config import Frozen

__all__ = ["TuneConfig"]


class TuneConfig(Frozen):
    """How `kelp tune` searches.

    Attributes:
        storage: where the study lives: an Optuna storage URL (``sqlite:///...``,
            ``postgresql://...``) or a journal file path; default
            ``RUN/tune/<study>/journal.log`` (Optuna's journal file storage, which several
            processes share safely through a lock file).
        study: the study's name; default ``<target>`` or ``trees-<model>``.
        seed: seeds the TPE sampler (offset by the trials already in the study, so that a
            resumed study draws new points, and by the worker with ``--jobs``).
        startup_trials: random trials before TPE models the history; the pruner prunes
            nothing before this many trials have finished.
        pruner: ``median`` stops a trial whose running figure after a fold is below the
            median of earlier trials after that fold; ``none`` runs every trial to the end.
        warmup_folds: folds every trial runs before it may be pruned.
        keep_trials: keep each trial's scratch folder (models, out-of-fold maps, tables).
        trees: ``[tune.trees]`` search-space overrides (a model's own under its name).
        cnn: ``[tune.cnn]`` search-space overrides.
        stack: ``[tune.stack]`` search-space overrides.
    """

    storage: str | None = None
    study: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    startup_trials: Annotated[int, Field(ge=0)] = 5
    pruner: Literal["median", "none"] = "median"
    warmup_folds: Annotated[int, Field(ge=0)] = 1
    keep_trials: bool = False
    trees: dict[str, Any] = Field(default_factory=dict)
    cnn: dict[str, Any] = Field(default_factory=dict)
    stack: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _spaces_are_valid(self) -> "TuneConfig":
        from kelp.tune.space import TREE_MODELS, build_space

        for model in TREE_MODELS:
            build_space("trees", model, self.trees)
        build_space("cnn", None, self.cnn)
        build_space("stack", None, self.stack)
        return self
