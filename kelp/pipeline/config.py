"""The experiment config of `kelp run`: one TOML file, one typed model, every key checked.

Tables: top-level keys (``name``, ``runs_dir``), ``[data]`` (+ ``[data.synth]``),
``[folds]``, ``[features]``, ``[tabular]``, ``[cnn]``, ``[stacking]``, ``[predict]``,
``[tracking]``, ``[tune]`` (read by `kelp tune` only), ``[cluster]`` (where the stages run:
part of no stage's key, since it changes how fast, not what they make). Every key is
optional; the README lists them with their defaults and ``configs/`` holds a CPU demo and a
full GPU configuration. Relative paths are relative to the directory ``kelp`` runs in, as for every
other command.
"""

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kelp.cluster import ClusterConfig
from kelp.cnn.config import CnnConfig
from kelp.config import Frozen, load_toml, validate_config
from kelp.data.config import DataConfig, FoldsConfig, SynthConfig
from kelp.features.config import FeatureConfig
from kelp.layout import RunLayout
from kelp.stacking.config import PredictConfig, StackConfig
from kelp.tabular.config import TabularConfig

__all__ = ["STAGES", "RunConfig", "Stage", "TrackingConfig", "TuneConfig", "load_run_config"]

# keys of v0.1 that moved: a config using one is refused with where it went
_RENAMED = {"workers": "[features] workers"}

Stage = Literal["folds", "features", "trees", "cnn", "stack", "predict"]
STAGES: tuple[Stage, ...] = ("folds", "features", "trees", "cnn", "stack", "predict")


class TrackingConfig(Frozen):
    """Optional MLflow logging (``pip install 'kelp[tracking]'``).

    Attributes:
        mlflow: log params, per-epoch and final metrics and key artifacts.
        uri: tracking URI; default a local file store ``<runs_dir>/mlruns``.
        experiment: MLflow experiment name.
    """

    mlflow: bool = False
    uri: str | None = None
    experiment: str = "kelp"


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

    The search spaces are checked by `kelp tune` (:func:`kelp.tune.space.build_space`) before
    any trial runs: the parameters they may name live with the tuner, above this config.
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


class RunConfig(Frozen):
    """Everything a run does.

    Attributes:
        name: run folder name under ``runs_dir``.
        runs_dir: where runs live.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] = "default"
    runs_dir: Path = Path("runs")
    data: DataConfig = DataConfig(synth=SynthConfig())
    folds: FoldsConfig = FoldsConfig()
    features: FeatureConfig = FeatureConfig()
    tabular: TabularConfig = TabularConfig()
    cnn: CnnConfig = CnnConfig()
    stacking: StackConfig = StackConfig()
    predict: PredictConfig = PredictConfig()
    tracking: TrackingConfig = TrackingConfig()
    tune: TuneConfig = TuneConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for old, new in _RENAMED.items():
                if old in values:
                    raise ValueError(f"top-level key {old!r} is now {new} (since kelp 0.2)")
        return values

    @property
    def run_dir(self) -> Path:
        """``runs_dir / name``."""
        return self.runs_dir / self.name

    @property
    def data_dir(self) -> Path:
        """The dataset folder."""
        return self.data.path if self.data.path is not None else self.run_dir / "data"

    def layout(self) -> RunLayout:
        """The run folder's layout, reading the configured dataset."""
        return RunLayout.of(self.run_dir, self.data_dir, band_order=self.data.band_order)

    def section(self, stage: Stage) -> dict[str, Any]:
        """The part of the config a stage depends on (JSON-ready), for its skip key."""
        parts: dict[Stage, tuple[str, ...]] = {
            "folds": ("folds",),
            "features": ("features",),
            "trees": ("tabular",),
            "cnn": ("cnn",),
            "stack": ("stacking",),
            "predict": ("predict",),
        }
        dump = self.model_dump(mode="json")
        for how in ("workers", "on_error"):  # how the build runs, not what it makes
            dump["features"].pop(how)
        for how in ("batch_size", "num_workers", "overlap"):  # how fast, not which masks
            dump["predict"].pop(how)
        return {k: dump[k] for k in parts[stage]} | {"band_order": dump["data"]["band_order"]}


def load_run_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read a run config file.

    Raises:
        ConfigError: no such file, invalid TOML, an unknown key or a wrong value (named,
            with the valid keys or values).
    """
    return validate_config(RunConfig, load_toml(path), where=str(path))
