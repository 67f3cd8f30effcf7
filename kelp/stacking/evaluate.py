"""`kelp evaluate`: global Dice and companions for any folder of predicted masks."""

import os
from pathlib import Path
from typing import Any

from kelp._progress import track
from kelp.data.io import read_mask
from kelp.errors import InputError, TileError
from kelp.metrics import MetricAccumulator

__all__ = ["evaluate_masks"]

_SUFFIX = "_kelp.tif"


def _masks(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found")
    found = {p.name[: -len(_SUFFIX)]: p for p in sorted(folder.glob(f"*{_SUFFIX}"))}
    if not found:
        raise InputError(f"{folder}: no <tile_id>{_SUFFIX} files in the {what} folder")
    return found


def evaluate_masks(pred: str | os.PathLike[str], truth: str | os.PathLike[str]) -> dict[str, Any]:
    """Score predicted masks against true masks, tile by tile (streamed counts).

    Args:
        pred: folder of ``<tile_id>_kelp.tif`` predictions.
        truth: folder of ``<tile_id>_kelp.tif`` true masks.

    Returns:
        ``MetricAccumulator.summary()``: global Dice (headline), IoU, precision, recall,
        mean per-tile Dice, counts, number of tiles.

    Raises:
        InputError: a true tile without prediction (or the reverse), a shape mismatch or a
            bad mask; every such tile is listed.
    """
    pred_masks = _masks(Path(pred), "prediction")
    true_masks = _masks(Path(truth), "truth")
    problems = []
    missing = sorted(true_masks.keys() - pred_masks.keys())
    extra = sorted(pred_masks.keys() - true_masks.keys())
    if missing:
        problems.append(f"{len(missing)} tile(s) without a prediction in {pred}: {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} prediction(s) without a true mask in {truth}: {extra[:5]}")
    accumulator = MetricAccumulator()
    for tile_id in track(sorted(true_masks.keys() & pred_masks.keys()), "evaluating"):
        try:
            p, t = read_mask(pred_masks[tile_id]), read_mask(true_masks[tile_id])
        except TileError as error:
            problems.append(str(error))
            continue
        if p.shape != t.shape:
            problems.append(f"{pred_masks[tile_id]}: shape {p.shape} differs from truth {t.shape}")
            continue
        accumulator.update(p, t, tile_id=tile_id)
    if problems:
        raise InputError("cannot evaluate:\n" + "\n".join(f"  - {p}" for p in problems))
    return accumulator.summary()
