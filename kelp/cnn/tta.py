"""Test-time augmentation: the mean of de-augmented logits over flips and 90-degree turns.

A transform is ``(k, flip)``: flip the columns when ``flip``, then rotate by ``k`` quarter
turns. :data:`D4` holds all 8 symmetries of the square (the 1st-place Kelp Wanted team's
"8x flip TTA"); rotations by 90/270 degrees turn an ``H x W`` tile into ``W x H``, which the
padding model accepts, and the inverse turns the logits back.
"""

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["D4", "IDENTITY", "Transform", "apply", "invert", "tta_logits"]

Transform = tuple[int, bool]

#: The identity only (no TTA).
IDENTITY: tuple[Transform, ...] = ((0, False),)
#: All 8 flips and rotations.
D4: tuple[Transform, ...] = tuple((k, flip) for flip in (False, True) for k in range(4))


def apply(x: torch.Tensor, t: Transform) -> torch.Tensor:
    """Transform the last two (spatial) dimensions of ``x``."""
    k, flip = t
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def invert(y: torch.Tensor, t: Transform) -> torch.Tensor:
    """Undo :func:`apply` on the last two dimensions of ``y``."""
    k, flip = t
    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return y.flip(-1) if flip else y


def tta_logits(
    model: nn.Module, x: torch.Tensor, transforms: Sequence[Transform] = D4
) -> torch.Tensor:
    """Mean logits of ``model`` over ``transforms``, each mapped back to the input's frame.

    Args:
        model: maps ``(N, C, H, W)`` to ``(N, 1, H, W)`` logits (any H, W).
        x: ``(N, C, H, W)`` inputs.
        transforms: the symmetries to average over.

    Returns:
        ``(N, H, W) float32`` logits.
    """
    total = torch.zeros((x.shape[0], *x.shape[-2:]), dtype=torch.float32, device=x.device)
    for t in transforms:
        total += invert(model(apply(x, t)), t)[:, 0].float()
    return total / len(transforms)
