"""Feature importance of one fitted model: a CSV of every feature and a bar chart PNG."""

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kelp._files import atomic_path

__all__ = ["write_importance"]

_TOP = 30  # bars in the chart; the CSV keeps every feature


def write_importance(
    folder: str | os.PathLike[str],
    names: Sequence[str],
    importance: np.ndarray,
    title: str,
) -> tuple[Path, Path]:
    """Write ``importance.csv`` (feature, importance, rank; most important first) and
    ``importance.png`` (the top 30) into ``folder``.

    Args:
        folder: the model's folder.
        names: feature names.
        importance: ``(F,)`` importances (normalised to sum 1 by the model).
        title: chart title, e.g. ``"lightgbm fold 0 (gain)"``.

    Returns:
        The CSV and PNG paths.
    """
    folder = Path(folder)
    order = np.argsort(-np.asarray(importance), kind="stable")
    csv_path = folder / "importance.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["feature", "importance", "rank"])
        for rank, i in enumerate(order, start=1):
            writer.writerow([names[i], f"{importance[i]:.6g}", rank])
    top = order[:_TOP][::-1]
    height = 0.22 * len(top) + 1.2
    figure = Figure(figsize=(7, height))
    # Fixed margins: a layout engine costs more than the rest of the chart put together.
    figure.subplots_adjust(left=0.3, right=0.97, top=1 - 0.45 / height, bottom=0.55 / height)
    axes = figure.subplots()
    axes.barh([names[i] for i in top], importance[top], color="#2a7f62")
    axes.set_xlabel("share of total importance")
    axes.set_title(title)
    axes.tick_params(axis="y", labelsize=7)
    png_path = folder / "importance.png"
    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return csv_path, png_path
