"""`kelp predict-cnn`: dense logits for any tiles from the fold models, averaged.

Each fold model normalises a tile with its own training statistics and predicts every pixel
(with TTA when asked); the tile's logit map is the mean of the fold models' logits, as the
Kelp Wanted winners averaged theirs. Tiles are read one at a time and batched by shape, so
memory does not grow with the number of tiles.

Output: a :class:`~kelp.maps.MapStore` of ``(H, W)`` logits (kind ``logit``, model ``cnn``),
``RUN/test/cnn/`` by default. Rerunning with the same checkpoints, TTA and tiles skips the
tiles already written; anything else starts the folder over.
"""

import hashlib
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
from kelp.cnn.checkpoint import WEIGHTS_FILE, load_checkpoint
from kelp.cnn.config import DeviceChoice
from kelp.cnn.device import Precision, precision_for, resolve_device
from kelp.cnn.inputs import CnnLayout, StaleInputError
from kelp.cnn.normalise import Normaliser
from kelp.cnn.tta import D4, IDENTITY, tta_logits
from kelp.data.catalog import TileRecord, scan_catalog
from kelp.features import FeatureConfig
from kelp.maps import finish_store, open_store, store_manifest

__all__ = ["Member", "TileChoice", "predict_cnn", "predict_tiles"]

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
        NonFiniteInputError: a normalised input would hold NaN/inf.
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


def _select(records: Sequence[TileRecord], tiles: TileChoice) -> list[TileRecord]:
    if tiles not in ("test", "train", "all"):
        raise ValueError(f"tiles must be 'test', 'train' or 'all', got {tiles!r}")
    return [r for r in records if tiles == "all" or r.split == tiles]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
        folds: which fold models to average; every trained fold by default.
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
        ChannelMismatchError: checkpoints with other channels than requested or than each
            other.
        StaleInputError: fold models built on different feature stacks.
        DeviceError: ``cuda`` without a GPU.
        ValueError: no tiles to predict, a bad ``batch_size`` or ``tiles``.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    layout = CnnLayout(Path(run))
    available = layout.trained_folds()
    chosen = list(folds) if folds is not None else available
    missing = [k for k in chosen if k not in available]
    if missing:
        raise FileNotFoundError(
            f"fold(s) {missing} have no checkpoint under {layout.root} (trained: {available}); "
            "train them with `kelp train-cnn --folds ...`"
        )
    torch_device = resolve_device(device)
    checkpoints = []
    for k in chosen:
        ckpt = load_checkpoint(layout.best(k), channels, torch_device)
        channels = ckpt.channels  # every later fold must match the first
        checkpoints.append(ckpt)
    first = checkpoints[0].meta
    for ckpt in checkpoints[1:]:
        if ckpt.meta["features"]["stack_hash"] != first["features"]["stack_hash"]:
            raise StaleInputError(
                f"{ckpt.path} was trained on another feature stack than {checkpoints[0].path}:"
                " retrain the folds of this run with `kelp train-cnn`"
            )
    oof = store_manifest(layout.oof)
    if tta is None:
        tta = bool(oof["tta"]) if oof and "tta" in oof else bool(first["training"]["tta"])
    elif oof and "tta" in oof and bool(oof["tta"]) != tta:
        say(
            f"[yellow]warning:[/yellow] TTA {'on' if tta else 'off'} here but "
            f"{'on' if oof['tta'] else 'off'} for the out-of-fold logits the stacker is fit on"
        )
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
        str(k): _sha256(c.path / WEIGHTS_FILE) for k, c in zip(chosen, checkpoints, strict=True)
    }
    key = hashlib.sha256(
        repr((sorted(hashes.items()), tta, [r.tile_id for r in records])).encode()
    ).hexdigest()[:16]
    out_dir = Path(out) if out is not None else layout.test
    store = open_store(out_dir, key)
    todo = [r for r in records if not store.has(r.tile_id)]
    if len(todo) < len(records):
        say(f"{out_dir}: {len(records) - len(todo)} tile(s) already predicted, skipping them")
    members = [Member(c.model, c.normaliser) for c in checkpoints]
    precision = precision_for("bf16", torch_device)
    for tile_id, logits in predict_tiles(
        members, todo, source, torch_device, batch_size, tta, precision,
        f"predicting {len(todo)} tiles x {len(members)} fold(s){' x 8 TTA' if tta else ''}",
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
