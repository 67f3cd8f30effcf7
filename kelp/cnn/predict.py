"""`kelp predict-cnn`: dense logits for any tiles from the CNN fold ensemble.

:class:`CnnEnsemble` is the one CNN fold ensemble: out-of-fold logits (an ensemble of the
one fold model that held the tile out), ``kelp predict-cnn`` and ``kelp predict`` all run a
tile through it, with the same normalisation per fold model, the same autocast (the
training config's ``amp`` on the device it runs on), the same TTA as the out-of-fold logits
and the mean over fold models in logit space, as the Kelp Wanted winners averaged theirs.
:func:`load_ensemble` takes only the folds ``0..k-1`` of the current split whose
checkpoints were trained under the key of ``RUN/oof/cnn``: a fold folder left over from
another k, or a fold retrained since, is refused. Tiles are read one at a time and batched
by shape, so memory does not grow with the number of tiles.

Output of ``kelp predict-cnn``: a :class:`~kelp.maps.MapStore` of ``(H, W)`` logits (kind
``logit``, model ``cnn``), ``RUN/test/cnn/`` by default. Rerunning with the same
checkpoints, TTA and tiles skips the tiles already written; anything else starts the folder
over.
"""

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from kelp import __version__
from kelp._progress import say, track
from kelp.cnn.channels import ChannelSource
from kelp.cnn.checkpoint import WEIGHTS_FILE, Checkpoint, load_checkpoint
from kelp.cnn.config import DeviceChoice
from kelp.cnn.device import Precision, precision_for, resolve_device
from kelp.cnn.inputs import CnnLayout
from kelp.cnn.normalise import Normaliser
from kelp.cnn.tta import D4, IDENTITY, tta_logits
from kelp.data.catalog import TileRecord, scan_catalog
from kelp.errors import StaleInputError
from kelp.features import FeatureConfig
from kelp.layout import file_sha256, short_hash
from kelp.maps import finish_store, open_store, store_manifest

__all__ = ["CnnEnsemble", "Member", "TileChoice", "load_ensemble", "predict_cnn", "predict_tiles"]

TileChoice = Literal["test", "train", "all"]


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
        transforms = D4 if self.tta else IDENTITY
        [(_, logits)] = _run_batch(
            self.members, [(tile_id, raw)], self.device, transforms, self.precision
        )
        return logits


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
            under another key than the out-of-fold logits (says to rerun ``kelp train-cnn``).
        StaleInputError: checkpoints with other channels than requested or each other.
    """
    layout = CnnLayout(Path(run))
    oof = store_manifest(layout.oof)
    if oof is None:
        raise FileNotFoundError(
            f"no finished CNN fold in {layout.oof} (its manifest.json is missing): run "
            f"`kelp train-cnn DATA --run {run}` first"
        )
    k = int(oof.get("k", max(oof["folds"].values(), default=-1) + 1))
    leftover = [f for f in layout.trained_folds() if f >= k]
    if leftover:
        raise StaleInputError(
            f"{layout.root}: fold(s) {leftover} are left over from a split with more folds "
            f"than the current {k}: rerun `kelp train-cnn` (it removes them)"
        )
    chosen = sorted(set(oof["folds"].values())) if folds is None else sorted(folds)
    missing = [f for f in chosen if f not in layout.trained_folds()]
    if missing or not chosen:
        raise FileNotFoundError(
            f"fold(s) {missing or '(none)'} have no checkpoint under {layout.root}: train them "
            "with `kelp train-cnn --folds ...`"
        )
    checkpoints = []
    for fold in chosen:
        ckpt = load_checkpoint(layout.best(fold), channels, device)
        channels = ckpt.channels  # every later fold must match the first
        if ckpt.meta["training"].get("key") != oof["key"]:
            raise StaleInputError(
                f"{ckpt.path} was trained with another config or inputs than the out-of-fold "
                f"logits in {layout.oof}: rerun `kelp train-cnn`"
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


def _select(records: Sequence[TileRecord], tiles: TileChoice) -> list[TileRecord]:
    if tiles not in ("test", "train", "all"):
        raise ValueError(f"tiles must be 'test', 'train' or 'all', got {tiles!r}")
    return [r for r in records if tiles == "all" or r.split == tiles]


def predict_cnn(
    data: str | os.PathLike[str],
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    folds: Sequence[int] | None = None,
    tta: bool | None = None,
    batch_size: int = 8,
    device: DeviceChoice = "auto",
    tiles: TileChoice = "test",
    channels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Predict logit maps for a dataset's tiles with the fold models of a run.

    Args:
        data: dataset folder (Kelp Wanted layout or a plain folder of tiles).
        run: the run directory holding ``cnn/fold=<k>/best``.
        out: output map folder; ``RUN/test/cnn`` by default.
        folds: which fold models to average; by default every fold whose out-of-fold
            logits are current (see :func:`load_ensemble`).
        tta: average over the 8 flips/rotations; by default as the out-of-fold logits were
            made (so the stacker sees test logits like the OOF ones it was fit on).
        batch_size: tiles per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        tiles: ``test`` (default), ``train`` or ``all`` tiles of the dataset.
        channels: the channels the caller expects; every checkpoint must match.

    Returns:
        The manifest written to ``OUT/manifest.json``.

    Raises:
        FileNotFoundError: no trained fold (says to run `kelp train-cnn`).
        StaleInputError: checkpoints with other channels than requested or than each
            other.
        StaleInputError: a leftover or retrained fold (see :func:`load_ensemble`).
        DeviceError: ``cuda`` without a GPU.
        ValueError: no tiles to predict, a bad ``batch_size`` or ``tiles``.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    torch_device = resolve_device(device)
    oof = store_manifest(CnnLayout(Path(run)).oof)
    if tta is not None and oof and "tta" in oof and bool(oof["tta"]) != tta:
        say(
            f"[yellow]warning:[/yellow] TTA {'on' if tta else 'off'} here but "
            f"{'on' if oof['tta'] else 'off'} for the out-of-fold logits the stacker is fit on"
        )
    ensemble = load_ensemble(run, torch_device, folds, tta, channels)
    checkpoints, chosen, tta = list(ensemble.checkpoints), list(ensemble.folds), ensemble.tta
    first = checkpoints[0].meta
    layout = CnnLayout(Path(run))
    catalog, problems = scan_catalog(data)
    for problem in problems:
        say(f"[yellow]skipping:[/yellow] {problem}")
    records = _select(catalog.tiles, tiles)
    if not records:
        raise ValueError(f"no {tiles} tiles in {data}")
    source = ChannelSource(
        FeatureConfig.model_validate(first["features"]["config"]),
        tuple(checkpoints[0].channels),
        tuple(first["features"]["band_order"]),
    )
    hashes = {
        str(k): file_sha256(c.path / WEIGHTS_FILE) for k, c in zip(chosen, checkpoints, strict=True)
    }
    key = short_hash([sorted(hashes.items()), tta, [r.tile_id for r in records]])
    out_dir = Path(out) if out is not None else layout.test
    store = open_store(out_dir, key)
    todo = [r for r in records if not store.has(r.tile_id)]
    if len(todo) < len(records):
        say(f"{out_dir}: {len(records) - len(todo)} tile(s) already predicted, skipping them")
    for tile_id, logits in predict_tiles(
        ensemble.members, todo, source, torch_device, batch_size, tta, ensemble.precision,
        f"predicting {len(todo)} tiles x {len(chosen)} fold(s){' x 8 TTA' if tta else ''}",
        total=len(todo),
    ):  # fmt: skip
        store.write(tile_id, logits, "logit")
    manifest = {
        "kind": "logit",
        "model": "cnn",
        "stage": "cnn-predict",
        "key": key,
        "kelp_version": __version__,
        "data": str(Path(data).resolve()),
        "tiles": tiles,
        "n_tiles": len(records),
        "folds_used": chosen,
        "checkpoints": {
            str(k): {
                "path": str(c.path.resolve()),
                "epoch": c.meta["training"]["epoch"],
                "val_dice": c.meta["training"]["val_dice"],
                "weights_sha256": hashes[str(k)],
            }
            for k, c in zip(chosen, checkpoints, strict=True)
        },
        "tta": tta,
        "channels": list(checkpoints[0].channels),
        "stack_hash": first["features"]["stack_hash"],
        "seconds": round(time.perf_counter() - started, 3),
    }
    finish_store(store, manifest)
    return manifest
