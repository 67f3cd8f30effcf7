"""A fold's training history: the per-epoch CSV log and its curves PNG.

Both are rewritten whole (atomically) after every epoch, so they can be watched while a fold
trains and are never half-written.
"""

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from kelp._files import atomic_path

__all__ = ["EpochRow", "plot_curves", "write_log"]


@dataclass(frozen=True)
class EpochRow:
    """One epoch of a fold.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean training loss over the epoch's batches.
        val_loss: mean loss over the validation tiles (NaN without validation tiles).
        val_dice: global Dice of the validation tiles at logit 0 (probability 0.5).
        lr: learning rate at the end of the epoch.
        seconds: wall time of the epoch, validation included.
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_dice: float
    lr: float
    seconds: float


COLUMNS = tuple(f.name for f in fields(EpochRow))


def write_log(rows: Sequence[EpochRow], path: str | os.PathLike[str]) -> None:
    """Write ``log.csv`` with columns epoch, train_loss, val_loss, val_dice, lr, seconds.

    Args:
        rows: every epoch so far.
        path: the CSV file.
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in asdict(row).items()})


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "" if math.isnan(value) else f"{value:.6g}"


def plot_curves(
    rows: Sequence[EpochRow], path: str | os.PathLike[str], title: str, best_epoch: int | None
) -> None:
    """Draw losses and validation Dice per epoch into a PNG.

    Uses matplotlib's object API (no pyplot), so it touches no global state and needs no
    display.

    Args:
        rows: every epoch so far.
        path: the PNG file.
        title: figure title, e.g. ``"fold 0"``.
        best_epoch: marked with a vertical line when given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r.epoch for r in rows]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, dice_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r.train_loss for r in rows], "o-", label="train loss", ms=3)
    loss_ax.plot(epochs, [r.val_loss for r in rows], "o-", label="validation loss", ms=3)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.set_yscale("log")  # the first epochs would flatten the rest on a linear axis
    loss_ax.legend()
    dice_ax.plot(epochs, [r.val_dice for r in rows], "o-", color="C2", label="val Dice", ms=3)
    dice_ax.set_xlabel("epoch")
    dice_ax.set_ylabel("validation global Dice")
    dice_ax.set_ylim(0, 1)
    lr_ax = dice_ax.twinx()
    lr_ax.plot(epochs, [r.lr for r in rows], color="0.6", lw=1, label="lr")
    lr_ax.set_ylabel("learning rate", color="0.4")
    if best_epoch is not None:
        for ax in (loss_ax, dice_ax):
            ax.axvline(best_epoch, color="0.5", ls="--", lw=1)
    fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
