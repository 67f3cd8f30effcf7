"""A picture of the predictions: tiles across the Dice range, four panels each.

Per tile: a false-colour composite (SWIR, NIR, red as R, G, B, each stretched between its
2nd and 98th percentile), the true mask, the fused probability as a heatmap, and an overlay
on the composite with true positives green, false positives red and false negatives blue,
titled with the tile's Dice.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kelp._files import atomic_path
from kelp.bands import MISSING
from kelp.data.tile import Tile
from kelp.metrics import Counts

__all__ = ["false_colour", "pick_across_range", "prediction_grid"]


def false_colour(tile: Tile) -> np.ndarray:
    """``(H, W, 3) float`` in [0, 1]: SWIR, NIR, red stretched per band; missing = black."""
    planes = []
    for name in ("swir", "nir", "red"):
        band = tile.band(name).astype(np.float32)
        valid = band != MISSING
        lo, hi = np.percentile(band[valid], [2, 98]) if valid.any() else (0.0, 1.0)
        planes.append(np.where(valid, np.clip((band - lo) / max(hi - lo, 1e-6), 0, 1), 0))
    return np.stack(planes, axis=-1)


def pick_across_range(dice: Sequence[float], n: int) -> list[int]:
    """Indices of ``n`` items spread evenly over the sorted Dice values (worst to best)."""
    order = np.argsort(np.asarray(dice), kind="stable")
    if len(order) <= n:
        return order.tolist()
    picks = np.linspace(0, len(order) - 1, n).round().astype(int)
    return order[picks].tolist()


def prediction_grid(
    tiles: Sequence[Tile],
    probs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    out: str | os.PathLike[str],
) -> Path:
    """Draw one row per tile and save a PNG (atomically).

    Args:
        tiles: tiles with their true masks.
        probs: ``(H, W)`` fused probabilities, one per tile.
        masks: ``(H, W)`` 0/1 predicted masks, one per tile.
        out: the PNG to write.

    Returns:
        The PNG's path.

    Raises:
        ValueError: no tile, or a tile without a true mask.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not tiles:
        raise ValueError("no tile to draw")
    fig, axes = plt.subplots(len(tiles), 4, figsize=(12, 3 * len(tiles)), squeeze=False)
    for row, (tile, prob, mask) in enumerate(zip(tiles, probs, masks, strict=True)):
        if tile.mask is None:
            raise ValueError(f"tile {tile.tile_id} has no true mask to compare with")
        truth = tile.mask.astype(bool)
        pred = mask.astype(bool)
        dice = Counts.from_arrays(pred, truth).dice
        composite = false_colour(tile)
        overlay = composite * 0.5
        overlay[pred & truth] = (0, 1, 0)
        overlay[pred & ~truth] = (1, 0, 0)
        overlay[~pred & truth] = (0, 0.3, 1)
        panels = [
            (composite, "SWIR/NIR/red"),
            (truth, "truth"),
            (prob, "P(kelp)"),
            (overlay, f"Dice {dice:.3f}: TP green, FP red, FN blue"),
        ]
        for col, (image, title) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(image, cmap="magma" if col == 2 else "gray", vmin=0, vmax=1)
            ax.set_title(f"{tile.tile_id} {title}" if col == 0 else title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return out
