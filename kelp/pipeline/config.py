"""The experiment config of `kelp run`: one TOML file, one typed model, every key checked.

Tables: top-level keys (``name``, ``runs_dir``, ``workers``), ``[data]`` (+ ``[data.synth]``),
``[folds]``, ``[features]``, ``[tabular]``, ``[cnn]``, ``[stacking]``, ``[predict]``,
``[tracking]``. Every key is optional; the README lists them with their defaults and
``configs/`` holds a CPU demo and a full GPU configuration. Relative paths are relative to
the directory ``kelp`` runs in, as for every other command.
"""

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kelp.cnn.config import CnnConfig
from kelp.config import validate_config
from kelp.data.bands import DEFAULT_BAND_ORDER
from kelp.errors import ConfigError
from kelp.features.config import FeatureConfig
from kelp.stacking.config import StackConfig
from kelp.tabular.config import TabularConfig

__all__ = [
    "STAGES",
    "DataConfig",
    "FoldsConfig",
    "PredictConfig",
    "RunConfig",
    "Stage",
    "SynthConfig",
    "TrackingConfig",
    "load_run_config",
]

Stage = Literal["folds", "features", "trees", "cnn", "stack", "predict"]
STAGES: tuple[Stage, ...] = ("folds", "features", "trees", "cnn", "stack", "predict")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthConfig(_Frozen):
    """A synthetic dataset written to ``[data] path`` when it does not exist yet."""

    tiles: Annotated[int, Field(ge=1)] = 200
    seed: int = 0
    size: Annotated[int, Field(ge=32)] = 350
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2


class DataConfig(_Frozen):
    """Where the tiles are.

    Attributes:
        path: the dataset folder (Kelp Wanted layout or plain folder). Default with
            ``synth``: ``RUN/data``.
        synth: synthesise the dataset at ``path`` first if it is missing.
        band_order: the files' band order.
    """

    path: Path | None = None
    synth: SynthConfig | None = None
    band_order: tuple[str, ...] = DEFAULT_BAND_ORDER

    @model_validator(mode="after")
    def _somewhere(self) -> "DataConfig":
        if self.path is None and self.synth is None:
            raise ValueError("give [data] path (a dataset folder) or a [data.synth] table")
        return self


class FoldsConfig(_Frozen):
    """``kelp data folds`` settings, or a folds file of your own (``file``)."""

    k: Annotated[int, Field(ge=2)] = 5
    seed: int = 0
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.97
    max_group_size: Annotated[int, Field(ge=1)] | None = None
    file: Path | None = None


class PredictConfig(_Frozen):
    """The final stage: masks for the test tiles.

    Attributes:
        enabled: run it (needs test tiles).
        data: folder of test tiles; default the dataset's own test tiles.
        tta: CNN test-time augmentation; default as for the out-of-fold logits.
        on_error: ``fail`` or ``skip`` a bad tile.
        device: where the CNN predicts.
    """

    enabled: bool = True
    data: Path | None = None
    tta: bool | None = None
    on_error: Literal["fail", "skip"] = "fail"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TrackingConfig(_Frozen):
    """Optional MLflow logging (``pip install 'kelp[tracking]'``).

    Attributes:
        mlflow: log params, per-epoch and final metrics and key artifacts.
        uri: tracking URI; default a local file store ``<runs_dir>/mlruns``.
        experiment: MLflow experiment name.
    """

    mlflow: bool = False
    uri: str | None = None
    experiment: str = "kelp"


class RunConfig(_Frozen):
    """Everything a run does.

    Attributes:
        name: run folder name under ``runs_dir``.
        runs_dir: where runs live.
        workers: processes for the feature build.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] = "default"
    runs_dir: Path = Path("runs")
    workers: Annotated[int, Field(ge=1)] = 1
    data: DataConfig = DataConfig(synth=SynthConfig())
    folds: FoldsConfig = FoldsConfig()
    features: FeatureConfig = FeatureConfig()
    tabular: TabularConfig = TabularConfig()
    cnn: CnnConfig = CnnConfig()
    stacking: StackConfig = StackConfig()
    predict: PredictConfig = PredictConfig()
    tracking: TrackingConfig = TrackingConfig()

    @property
    def run_dir(self) -> Path:
        """``runs_dir / name``."""
        return self.runs_dir / self.name

    @property
    def data_dir(self) -> Path:
        """The dataset folder."""
        return self.data.path if self.data.path is not None else self.run_dir / "data"

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
        return {k: dump[k] for k in parts[stage]} | {"band_order": dump["data"]["band_order"]}


def load_run_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read a run config file.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: invalid TOML, an unknown key or a wrong value (named, with the valid
            keys or values).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return validate_config(RunConfig, values, where=str(path))
