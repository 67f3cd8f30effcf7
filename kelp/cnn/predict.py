"""`kelp predict-cnn`: dense logits for any tiles from the CNN fold ensemble.

The ensemble itself (:class:`CnnEnsemble`, :func:`load_ensemble`, :func:`predict_tiles`)
lives in :mod:`kelp.cnn.ensemble` and is re-exported here; see there for how it matches
the out-of-fold logits.

Output of ``kelp predict-cnn``: a :class:`~kelp.maps.MapStore` of ``(H, W)`` logits (kind
``logit``, model ``cnn``), ``RUN/test/cnn/`` by default. Rerunning with the same
checkpoints, TTA and tiles skips the tiles already written; anything else starts the folder
over.
"""

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from kelp import __version__
from kelp._progress import say
from kelp.cnn.channels import ChannelSource
from kelp.cnn.checkpoint import WEIGHTS_FILE, Checkpoint
from kelp.cnn.device import resolve_device
from kelp.cnn.ensemble import load_ensemble, predict_tiles
from kelp.data.catalog import TileRecord, scan_catalog
from kelp.devices import Device
from kelp.errors import ConfigError, InputError
from kelp.features import FeatureConfig
from kelp.layout import RunLayout, file_sha256, short_hash
from kelp.maps import finish_store, open_store, store_manifest

__all__ = ["TileChoice", "predict_cnn"]

TileChoice = Literal["test", "train", "all"]


def _select(records: Sequence[TileRecord], tiles: TileChoice) -> list[TileRecord]:
    if tiles not in ("test", "train", "all"):
        raise ConfigError(f"tiles must be 'test', 'train' or 'all', got {tiles!r}")
    return [r for r in records if tiles == "all" or r.split == tiles]


def predict_cnn(
    data: str | os.PathLike[str],
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    folds: Sequence[int] | None = None,
    tta: bool | None = None,
    batch_size: int = 8,
    device: Device = "auto",
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
            other, or a leftover or retrained fold (see :func:`load_ensemble`).
        DeviceError: ``cuda`` without a GPU.
        InputError: no tiles to predict.
        ConfigError: a bad ``batch_size`` or ``tiles``.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    torch_device = resolve_device(device)
    _warn_on_other_tta(run, tta)
    ensemble = load_ensemble(run, torch_device, folds, tta, channels)
    checkpoints, chosen, tta = list(ensemble.checkpoints), list(ensemble.folds), ensemble.tta
    first = checkpoints[0].meta
    records = _records(data, tiles)
    source = _source(checkpoints[0])
    hashes = {
        str(k): file_sha256(c.path / WEIGHTS_FILE) for k, c in zip(chosen, checkpoints, strict=True)
    }
    key = short_hash([sorted(hashes.items()), tta, [r.tile_id for r in records]])
    out_dir = Path(out) if out is not None else RunLayout.of(run).test("cnn")
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
        "checkpoints": _checkpoint_facts(chosen, checkpoints, hashes),
        "tta": tta,
        "channels": list(checkpoints[0].channels),
        "stack_hash": first["features"]["stack_hash"],
        "seconds": round(time.perf_counter() - started, 3),
    }
    finish_store(store, manifest)
    return manifest


def _warn_on_other_tta(run: str | os.PathLike[str], tta: bool | None) -> None:
    """Warn when ``tta`` differs from the out-of-fold logits' (the stacker's inputs)."""
    oof = store_manifest(RunLayout.of(run).oof("cnn"))
    if tta is not None and oof and "tta" in oof and bool(oof["tta"]) != tta:
        say(
            f"[yellow]warning:[/yellow] TTA {'on' if tta else 'off'} here but "
            f"{'on' if oof['tta'] else 'off'} for the out-of-fold logits the stacker is fit on"
        )


def _source(checkpoint: Checkpoint) -> ChannelSource:
    """Builds a tile's raw channels as for the checkpoint's training (its feature config)."""
    features = checkpoint.meta["features"]
    return ChannelSource(
        FeatureConfig.model_validate(features["config"]),
        tuple(checkpoint.channels),
        tuple(features["band_order"]),
    )


def _records(data: str | os.PathLike[str], tiles: TileChoice) -> list[TileRecord]:
    """The dataset's chosen tiles, reporting the files it skips.

    Raises:
        InputError: no such tile.
    """
    catalog, problems = scan_catalog(data)
    for problem in problems:
        say(f"[yellow]skipping:[/yellow] {problem}")
    records = _select(catalog.tiles, tiles)
    if not records:
        raise InputError(f"no {tiles} tiles in {data}")
    return records


def _checkpoint_facts(
    folds: Sequence[int], checkpoints: Sequence[Checkpoint], hashes: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The manifest's ``checkpoints``: per fold, where its weights are and what they scored."""
    return {
        str(k): {
            "path": str(c.path.resolve()),
            "epoch": c.meta["training"]["epoch"],
            "val_dice": c.meta["training"]["val_dice"],
            "weights_sha256": hashes[str(k)],
        }
        for k, c in zip(folds, checkpoints, strict=True)
    }
