"""The typed configuration of the stacking stage."""

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kelp.config import Frozen
from kelp.devices import Device
from kelp.features.config import SamplingConfig
from kelp.registry import one_of

__all__ = [
    "BEST",
    "META_MODELS",
    "MetaChoice",
    "MetaName",
    "PostprocessConfig",
    "PredictConfig",
    "StackConfig",
]

_Meta = Literal["average", "logistic", "lightgbm"]
META_MODELS: tuple[_Meta, ...] = get_args(_Meta)
MetaName = Annotated[_Meta, one_of("meta-model", META_MODELS)]
BEST = "best"
MetaChoice = Annotated[
    Literal["best", "average", "logistic", "lightgbm"],
    one_of("meta-model", (BEST, *META_MODELS)),
]
Morphology = Literal["none", "open", "close"]


_LIGHTGBM = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "verbose": -1,
}


class PostprocessConfig(Frozen):
    """The post-processing grid searched on out-of-fold maps by global Dice.

    Attributes:
        coarse_step: threshold step of the first pass over (0, 1).
        fine_step: threshold step of the refinement around the best coarse threshold.
        land_mask: whether to try removing pixels on land (valid DEM > 0).
        min_areas: minimum connected-component sizes (pixels, 8-connected) to try; 0 keeps all.
        morphology: 3x3 opening/closing variants to try before the area filter.
    """

    coarse_step: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    fine_step: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    land_mask: tuple[bool, ...] = (False, True)
    min_areas: tuple[Annotated[int, Field(ge=0)], ...] = (0, 2, 4, 8, 16)
    morphology: tuple[Morphology, ...] = ("none",)


class StackConfig(Frozen):
    """What the stacker fits and searches.

    Attributes:
        meta: the meta-model fit on all out-of-fold pixels and used by ``kelp predict``;
            ``logistic`` by default: a calibrated linear fusion of logits that cannot overfit
            a few hundred tiles. ``best``: every compared meta-model's cross-validated maps
            get their own post-processing search, and the meta-model is chosen by the Dice
            of its final masks (threshold, land mask, area filter), not of its raw maps: a
            meta-model that fires on land a land mask removes is not penalised for it. Fold
            k is fused by the meta-model whose masks, under the decision chosen on the
            *other* folds, score best there; ``decision.json``'s nested figure scores each
            fold that way (the ``stack-best`` row of the comparison counts those folds' raw
            maps); the one best on all folds, with its decision, is fit for ``kelp
            predict``, and its maps are ``stacking/oof``.
        compare: meta-models cross-validated for the comparison table; ``meta`` is always
            among them (added when missing), so its decision is chosen on its own
            cross-validated maps of this very run; ``best`` chooses among them.
        models: base models to fuse (folder names under ``RUN/oof``); empty = all found.
        sampling: out-of-fold pixels the meta-models are fit on (as in the feature table).
        max_rows: a memory bound on those pixels over all tiles: each tile keeps at most
            ``ceil(max_rows / tiles)`` of its sampled pixels, a seeded uniform draw whose
            weights are multiplied by sampled / kept; ``None`` keeps them all. The
            manifest's ``rows`` says how many were sampled and kept.
        lightgbm: parameters of the LightGBM meta-model.
        postprocess: the grid searched on out-of-fold fused maps.
        seed: seeds the pixel sampling and the meta-models.
        grid_tiles: tiles drawn in ``grid.png`` (0 = no picture).
    """

    meta: MetaChoice = "logistic"
    compare: tuple[MetaName, ...] = META_MODELS
    models: tuple[str, ...] = ()
    sampling: SamplingConfig = SamplingConfig()
    max_rows: Annotated[int, Field(ge=1)] | None = None
    lightgbm: dict[str, Any] = Field(default_factory=lambda: dict(_LIGHTGBM))
    postprocess: PostprocessConfig = PostprocessConfig()
    seed: int = 0
    grid_tiles: Annotated[int, Field(ge=0)] = 8

    @field_validator("compare")
    @classmethod
    def _not_empty(cls, compare: tuple[MetaName, ...]) -> tuple[MetaName, ...]:
        if not compare:
            raise ValueError("compare needs at least one meta-model")
        return compare

    @model_validator(mode="after")
    def _meta_is_compared(self) -> "StackConfig":
        if self.meta != BEST and self.meta not in self.compare:
            object.__setattr__(self, "compare", (*self.compare, self.meta))
        return self


class PredictConfig(Frozen):
    """The final stage, `kelp predict`: masks for the test tiles.

    Attributes:
        enabled: run it in `kelp run` (which skips it when the dataset has no test tiles).
        data: folder of test tiles; default the run's dataset's own test tiles.
        out: where the masks go; default ``RUN/predictions``.
        tta: CNN test-time augmentation; default as for the out-of-fold logits.
        on_error: ``fail`` stops at a bad tile (masks written so far stay); ``skip`` leaves
            it out, lists it in the manifest and still packs the others.
        device: where the CNN predicts.
        batch_size: tiles per CNN forward pass; a batch holds tiles of one size (a tile of
            an odd size forms its own). ``auto`` = 8 on CUDA, 1 on the CPU, where 8 tiles
            of 350 px at once took about 0.6 GB more memory and were no faster (5 resnet18
            folds: 0.75 s per tile against 0.6 s one at a time, 2 cores). The masks do not
            depend on it.
        num_workers: processes reading tiles and computing their channel stacks while the
            models predict; 0 does it in this process, and a single tile never starts one.
            ``auto`` = 0 on up to 2 cores (there a worker was within 4% of none, either way,
            as the models keep both cores busy), else ``min(2, cores - 2)``. The masks do
            not depend on it.
        overlap: run two base-model families at once (e.g. the CNN of one batch beside a
            tree family of the next), each library on half the cores, rather than one after
            another on all of them; on one core it is off. The masks do not depend on it.
    """

    enabled: bool = True
    data: Path | None = None
    out: Path | None = None
    tta: bool | None = None
    on_error: Literal["fail", "skip"] = "fail"
    device: Device = "auto"
    batch_size: Literal["auto"] | int = "auto"
    num_workers: Literal["auto"] | int = "auto"
    overlap: bool = True

    @field_validator("batch_size", "num_workers")
    @classmethod
    def _auto_or_count(cls, value: Literal["auto"] | int, info: ValidationInfo) -> Any:
        least = 1 if info.field_name == "batch_size" else 0
        if value != "auto" and value < least:
            raise ValueError(f"must be 'auto' or an integer >= {least}")
        return value
