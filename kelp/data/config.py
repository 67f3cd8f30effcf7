"""The typed configuration of the data stages: where the tiles are, and how folds are made."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from kelp.bands import DEFAULT_BAND_ORDER
from kelp.config import Frozen

__all__ = ["DataConfig", "FoldsConfig", "SynthConfig"]


class SynthConfig(Frozen):
    """A synthetic dataset written to ``[data] path`` when it does not exist yet.

    Attributes:
        tiles: train + test tiles.
        seed: same seed, same files.
        size: tile side in pixels.
        test_fraction: share of test tiles (from places of their own).
        preset: ``default``, or ``hard``: confounders, faint canopy, miscalibrated dates and
            kelp-free look-alike areas (see :mod:`kelp.data.synth_hard`).
    """

    tiles: Annotated[int, Field(ge=1)] = 200
    seed: int = 0
    size: Annotated[int, Field(ge=32)] = 350
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2
    preset: Literal["default", "hard"] = "default"


class DataConfig(Frozen):
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


class FoldsConfig(Frozen):
    """How `kelp data folds` groups tiles into areas and splits them, or a folds file of
    your own (``file``).

    Attributes:
        k: number of folds.
        seed: shuffles areas across folds (the feature sampling has its own,
            ``[features.sampling] seed``).
        threshold: DEM height and slope correlation that links two tiles into one area.
        max_group_size: largest area in tiles; default ``ceil(n_train / k)``.
        file: validate and adopt this folds CSV instead of making one.
        on_error: ``skip`` (the default of `kelp run`) leaves every bad train tile out of the
            folds, listing it with its reason in ``folds.csv`` and on screen, and runs on
            the rest; ``fail`` (the default of `kelp data folds`) stops at any problem.
    """

    k: Annotated[int, Field(ge=2)] = 5
    seed: int = 0
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.97
    max_group_size: Annotated[int, Field(ge=1)] | None = None
    file: Path | None = None
    on_error: Literal["fail", "skip"] = "skip"
