"""The CNN fold ensemble: its members, running them over tiles, and loading a run's.

:class:`CnnEnsemble` is the one CNN fold ensemble: out-of-fold logits (an ensemble of the
one fold model that held the tile out), ``kelp predict-cnn`` and ``kelp predict`` all run a
tile through it, with the same normalisation per fold model, the same autocast (the
training config's ``amp`` on the device it runs on), the same TTA as the out-of-fold logits
and the mean over fold models in logit space, as the Kelp Wanted winners averaged theirs.
:func:`load_ensemble` takes only the folds ``0..k-1`` of the current split whose
checkpoints were trained under the key of ``RUN/oof/cnn``: a fold folder left over from
another k, or a fold retrained since, is refused. :func:`predict_tiles` reads tiles one at a
time and batches them by shape, so memory does not grow with the number of tiles.
"""

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kelp._progress import track
from kelp.cnn.channels import ChannelSource
from kelp.cnn.checkpoint import Checkpoint, load_checkpoint
from kelp.cnn.device import Precision, precision_for
from kelp.cnn.inputs import trained_folds
from kelp.cnn.normalise import Normaliser
from kelp.cnn.tta import D4, IDENTITY, tta_logits
from kelp.data.catalog import TileRecord
from kelp.errors import StaleInputError
from kelp.layout import RunLayout
from kelp.maps import store_manifest

__all__ = ["CnnEnsemble", "Member", "ensemble_precision", "load_ensemble", "predict_tiles"]


@dataclass(frozen=True)
class Member:
    """One model of an ensemble with the normalisation its inputs need.

    Attributes:
        model: maps ``(N, C, H, W)`` to ``(N, 1, H, W)`` logits, on the device.
        normaliser: its input normalisation.
    """

    model: nn.Module
    normaliser: Normaliser


def predict_tiles(
    members: Sequence[Member],
    records: Iterable[TileRecord],
    source: ChannelSource,
    device: torch.device,
    batch_size: int = 8,
    tta: bool = False,
    precision: Precision | None = None,
    description: str = "predicting",
    total: int | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield each tile's mean logits over the members (and TTA transforms).

    Args:
        members: the models with their normalisers.
        records: the tiles.
        source: builds a tile's raw channels (in the members' channel order).
        device: where the models are.
        batch_size: tiles per forward pass (consecutive tiles of one shape).
        tta: average over the 8 flips/rotations.
        precision: autocast settings (CUDA); ``None`` runs float32.
        description: the progress bar's label.
        total: number of tiles, for the progress bar.

    Yields:
        ``(tile_id, logits)``: ``(H, W) float32``.

    Raises:
        InputError: a normalised input would hold NaN/inf.
    """
    transforms = D4 if tta else IDENTITY
    batch: list[tuple[str, np.ndarray]] = []
    for member in members:
        member.model.eval()
    for record in track(records, description, total=total):
        raw, _ = source(record)
        if batch and (len(batch) == batch_size or batch[0][1].shape != raw.shape):
            yield from _run_batch(members, batch, device, transforms, precision)
            batch = []
        batch.append((record.tile_id, raw))
    if batch:
        yield from _run_batch(members, batch, device, transforms, precision)


def _run_batch(
    members: Sequence[Member],
    batch: list[tuple[str, np.ndarray]],
    device: torch.device,
    transforms: Sequence[tuple[int, bool]],
    precision: Precision | None,
) -> Iterator[tuple[str, np.ndarray]]:
    dtype = precision.dtype if precision is not None else None
    per_member = []
    with torch.inference_mode():
        for member in members:
            x = np.stack([member.normaliser(raw, f"tile {tile_id}") for tile_id, raw in batch])
            inputs = torch.from_numpy(x).to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                per_member.append(tta_logits(member.model, inputs, transforms))
    mean = torch.stack(per_member).mean(dim=0).cpu().numpy()
    for (tile_id, _), logits in zip(batch, mean, strict=True):
        yield tile_id, logits


@dataclass(frozen=True)
class CnnEnsemble:
    """The CNN fold ensemble of a run, as its out-of-fold logits were made.

    Attributes:
        checkpoints: one per fold, in fold order.
        folds: their folds.
        device: where the models are.
        precision: autocast settings (the training config's ``amp`` on this device).
        tta: average over the 8 flips/rotations.
        key: the training key every checkpoint was made under.
    """

    checkpoints: tuple[Checkpoint, ...]
    folds: tuple[int, ...]
    device: torch.device
    precision: Precision
    tta: bool
    key: str

    @property
    def members(self) -> list[Member]:
        """The models with their normalisers."""
        return [Member(c.model, c.normaliser) for c in self.checkpoints]

    @property
    def channels(self) -> tuple[str, ...]:
        """Input channel names, in order."""
        return self.checkpoints[0].channels

    def tile_logits(self, raw: np.ndarray, tile_id: str) -> np.ndarray:
        """``(H, W) float32`` mean logits of one tile's raw ``(C, H, W)`` channels."""
        return self.batch_logits([raw], [tile_id])[0]

    def batch_logits(self, raws: Sequence[np.ndarray], tile_ids: Sequence[str]) -> np.ndarray:
        """``(B, H, W) float32`` mean logits of tiles of one shape, in one forward pass.

        Args:
            raws: each tile's raw ``(C, H, W)`` channels.
            tile_ids: their ids (named in errors).

        Raises:
            InputError: a normalised input would hold NaN/inf.
        """
        transforms = D4 if self.tta else IDENTITY
        batch = list(zip(tile_ids, raws, strict=True))
        out = _run_batch(self.members, batch, self.device, transforms, self.precision)
        return np.stack([logits for _, logits in out])


def ensemble_precision(checkpoint: Checkpoint, device: torch.device) -> Precision:
    """The autocast a checkpoint's logits are made with: its training ``amp`` on ``device``."""
    amp = checkpoint.meta["training"]["config"].get("amp", "off")
    return precision_for(amp, device)


def load_ensemble(
    run: str | os.PathLike[str],
    device: torch.device,
    folds: Sequence[int] | None = None,
    tta: bool | None = None,
    channels: Sequence[str] | None = None,
) -> CnnEnsemble:
    """The CNN fold ensemble that made ``RUN/oof/cnn``.

    Args:
        run: the run folder.
        device: where to put the models.
        folds: which folds; ``None`` = every fold whose out-of-fold logits are current.
        tta: ``None`` = as the out-of-fold logits were made.
        channels: the channels the caller will feed; every checkpoint must match.

    Returns:
        The ensemble.

    Raises:
        FileNotFoundError: no out-of-fold logits or a fold without checkpoint (says to run
            ``kelp train-cnn``).
        StaleInputError: a fold folder left over from another k, or a checkpoint trained
            under another key than the out-of-fold logits (says to rerun ``kelp train-cnn``),
            or checkpoints with other channels than requested or each other.
    """
    layout = RunLayout.of(run)
    oof = store_manifest(layout.oof("cnn"))
    if oof is None:
        raise FileNotFoundError(
            f"no finished CNN fold in {layout.oof('cnn')} (its manifest.json is missing): run "
            f"`kelp train-cnn DATA --run {run}` first"
        )
    k = int(oof.get("k", max(oof["folds"].values(), default=-1) + 1))
    leftover = [f for f in trained_folds(layout) if f >= k]
    if leftover:
        raise StaleInputError(
            f"{layout.cnn}: fold(s) {leftover} are left over from a split with more folds "
            f"than the current {k}: rerun `kelp train-cnn` (it removes them)"
        )
    chosen = sorted(set(oof["folds"].values())) if folds is None else sorted(folds)
    missing = [f for f in chosen if f not in trained_folds(layout)]
    if missing or not chosen:
        raise FileNotFoundError(
            f"fold(s) {missing or '(none)'} have no checkpoint under {layout.cnn}: train them "
            "with `kelp train-cnn --folds ...`"
        )
    checkpoints = []
    for fold in chosen:
        ckpt = load_checkpoint(layout.cnn_best(fold), channels, device)
        channels = ckpt.channels  # every later fold must match the first
        if ckpt.meta["training"].get("key") != oof["key"]:
            raise StaleInputError(
                f"{ckpt.path} was trained with another config or inputs than the out-of-fold "
                f"logits in {layout.oof('cnn')}: rerun `kelp train-cnn`"
            )
        checkpoints.append(ckpt)
    return CnnEnsemble(
        checkpoints=tuple(checkpoints),
        folds=tuple(chosen),
        device=device,
        precision=ensemble_precision(checkpoints[0], device),
        tta=bool(oof.get("tta", False)) if tta is None else tta,
        key=str(oof["key"]),
    )
