"""The typed configuration of `kelp train-cnn`: channels, model, loss, schedule, machine.

A TOML file fills it from a ``[cnn]`` table (see :func:`kelp.config.load_config`); every
key is checked and an unknown one is an error naming the valid keys.

Defaults, and why:

- **channels** (:data:`DEFAULT_CHANNELS`, 14): the five reflective bands (the canopy is a
  NIR/SWIR rise over dark water), their offsets from the tile's clear-water median for NIR
  and SWIR (they remove date-to-date illumination and haze, the largest nuisance across the
  dates of one area), three water/vegetation indices (NDVI separates canopy from water,
  NDWI and MNDWI water from land and cloud), and the context channels QA, DEMWM, DEM water
  mask and land closeness (kelp grows only in water, next to rocky coast). No neighbourhood
  filters: they are how the trees see texture, while a U-Net learns its own spatial filters
  through its receptive field, so they would only cost memory.
- **encoder** ``resnet34``: a well-tested smp encoder with imagenet weights, 21 M
  parameters, stride-32 features; on 350 px tiles it trains at full resolution in batches of
  16 on one GPU. The Kelp Wanted winners used heavier encoders (EfficientNet-B5, ConvNeXt,
  SegFormer) for +0.01-0.02 Dice in ensembles; resnet34 is the baseline they improved on,
  fast enough for 5-10 folds.
- **encoder_weights** ``none``: training must work offline. ``imagenet`` was worth about
  +0.024 validation Dice to the 2nd-place team; use it where the hub can be reached once.
- **loss** ``dice_bce``: Dice optimises the metric's shape, BCE keeps a gradient on batches
  without kelp, where smp's Dice is 0.
- warm-up then cosine decay, AdamW, gradient clipping at 1.0, a weighted sampler that shows
  tiles with kelp 3x as often (+0.012 Dice for the 2nd-place team), flips and 90-degree
  rotations as augmentation (kelp has no preferred orientation), 8-fold dihedral TTA for the
  out-of-fold and test logits.

The CPU demo's lighter variant is the ``[cnn]`` table of ``kelp/pipeline/presets/demo.toml``.
"""

import math
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from kelp.config import Frozen
from kelp.devices import Device
from kelp.layout import short_hash
from kelp.registry import one_of

__all__ = [
    "DEFAULT_CHANNELS",
    "Amp",
    "Arch",
    "CnnConfig",
    "LossName",
    "Normalisation",
    "Schedule",
]

Arch = Literal["unet", "unetplusplus"]
_Loss = Literal["dice_bce", "dice", "bce", "focal", "lovasz"]
LossName = Annotated[_Loss, one_of("loss", get_args(_Loss))]
Schedule = Literal["cosine", "onecycle"]
Amp = Literal["bf16", "fp16", "off"]
Normalisation = Literal["quantile", "zscore"]

DEFAULT_CHANNELS: tuple[str, ...] = (
    "swir", "nir", "red", "green", "blue",
    "swir_offset", "nir_offset",
    "NDVI", "NDWI", "MNDWI",
    "qa", "DEMWM", "dem_water", "land_closeness",
)  # fmt: skip

# Fields that change where or how fast a fold trains, not what it learns: they stay out of
# the key that decides whether a checkpoint can be resumed or reused.
_MACHINE_FIELDS = frozenset({"device", "num_workers", "cache_mb"})


class CnnConfig(Frozen):
    """Everything that defines a fold's U-Net and how it is trained.

    Attributes:
        channels: channel subset of the feature stack, by name, in input order.
        arch: smp decoder: ``unet`` or ``unetplusplus``.
        encoder: smp encoder name (``resnet34``, ``efficientnet-b0``, ``tu-convnext_tiny``...).
        encoder_weights: ``none`` (random init, offline) or ``imagenet`` (downloaded once to
            the Hugging Face cache).
        encoder_depth: encoder stages, 3-5; inputs are padded to a multiple of
            ``2 ** encoder_depth`` and cropped back.
        decoder_channels: one width per decoder stage (``encoder_depth`` of them).
        loss: ``dice_bce`` (sum), ``dice``, ``bce``, ``focal`` or ``lovasz`` (smp losses).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        epochs: maximum epochs per fold.
        warmup_epochs: linear warm-up length (``cosine`` schedule; may be fractional).
        schedule: ``cosine`` (warm-up, then cosine to ``min_lr_ratio * lr``) or
            ``onecycle`` (torch's OneCycleLR peaking at ``lr``).
        min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
        batch_size: tiles (or crops) per training batch, tiles per inference batch.
        crop_size: train on random ``crop_size`` px windows instead of whole tiles (a
            window centred on a random kelp pixel for half the draws from tiles with kelp,
            anywhere otherwise); prediction stays on whole tiles. ``None`` = whole tiles.
        steps_per_epoch: optimiser steps per epoch (``steps_per_epoch * batch_size`` draws);
            ``None`` = one pass over the training tiles. With it a CPU user sizes training
            by steps, whatever the number of tiles.
        patience: stop after this many epochs without a better validation score; 0 never
            stops early.
        stop_fraction: share of the training folds' areas held back (area-grouped, kelp on
            both sides) to validate on: the best epoch and early stopping are chosen there,
            never on the fold being predicted (:mod:`kelp.data.split`, as for the trees).
        grad_clip: clip the gradients' global norm to this; 0 turns clipping off.
        amp: mixed precision on CUDA (``bf16``, ``fp16`` with a gradient scaler, ``off``);
            ignored on CPU.
        normalisation: ``quantile`` (clip to the 1%-99% quantiles of the training folds,
            scale to [0, 1]) or ``zscore`` (mean/std of the training folds, clipped to +-10).
        nan_fill: the value a missing (NaN) input takes after scaling (0 = the 1% quantile
            under ``quantile``, the mean under ``zscore``).
        augment: random flips and 90-degree rotations of training tiles.
        weighted_sampler: draw training tiles with replacement, weighting tiles with kelp.
        kelp_tile_weight: a tile with kelp is drawn this many times as often as one without.
        tta: average the logits over the 8 flips/rotations for out-of-fold (and, by default,
            test) predictions.
        num_workers: DataLoader worker processes; ``auto`` = 0 on CPU, up to 8 on CUDA.
        cache_mb: memory for keeping tiles' raw channels between epochs, in total: shared
            out between this process and the DataLoader workers (each training and
            validation loader worker keeps its own part).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        seed: seeds torch, numpy, python, augmentation and sampling.
    """

    channels: tuple[str, ...] = DEFAULT_CHANNELS
    arch: Arch = "unet"
    encoder: str = "resnet34"
    encoder_weights: Literal["none", "imagenet"] = "none"
    encoder_depth: Annotated[int, Field(ge=3, le=5)] = 5
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    loss: LossName = "dice_bce"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    epochs: Annotated[int, Field(ge=1)] = 40
    warmup_epochs: Annotated[float, Field(ge=0)] = 1.0
    schedule: Schedule = "cosine"
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    batch_size: Annotated[int, Field(ge=1)] = 16
    crop_size: Annotated[int, Field(ge=32)] | None = None
    steps_per_epoch: Annotated[int, Field(ge=1)] | None = None
    patience: Annotated[int, Field(ge=0)] = 10
    stop_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    grad_clip: Annotated[float, Field(ge=0)] = 1.0
    amp: Amp = "bf16"
    normalisation: Normalisation = "quantile"
    nan_fill: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    augment: bool = True
    weighted_sampler: bool = True
    kelp_tile_weight: Annotated[float, Field(ge=1)] = 3.0
    tta: bool = True
    num_workers: Literal["auto"] | Annotated[int, Field(ge=0)] = "auto"
    cache_mb: Annotated[int, Field(ge=0)] = 2048
    device: Device = "auto"
    seed: Annotated[int, Field(ge=0)] = 0

    @field_validator("channels")
    @classmethod
    def _channels(cls, channels: tuple[str, ...]) -> tuple[str, ...]:
        if not channels:
            raise ValueError("give at least one channel")
        repeated = sorted({c for c in channels if channels.count(c) > 1})
        if repeated:
            raise ValueError(f"channel(s) {repeated} listed twice")
        return channels

    @model_validator(mode="after")
    def _decoder_matches_depth(self) -> "CnnConfig":
        if len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(
                f"decoder_channels needs one width per encoder stage: encoder_depth is "
                f"{self.encoder_depth}, got {len(self.decoder_channels)} widths "
                f"{list(self.decoder_channels)}"
            )
        if any(w < 1 for w in self.decoder_channels):
            raise ValueError(f"decoder_channels must be >= 1, got {list(self.decoder_channels)}")
        if self.schedule == "cosine" and self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs:g}) must be shorter than epochs "
                f"({self.epochs})"
            )
        return self

    def training_key(self) -> str:
        """Short hash of every field that changes what a fold learns (not the machine).

        Returns:
            16 hex digits.
        """
        return short_hash(self.model_dump(mode="json", exclude=set(_MACHINE_FIELDS)))

    @property
    def pad_multiple(self) -> int:
        """Tile sides are padded to a multiple of this before the encoder."""
        return int(math.pow(2, self.encoder_depth))
