"""Segmentation losses, all from segmentation-models-pytorch, all skipping padded pixels.

``dice_bce`` (the default) is the sum of smp's binary Dice and BCE losses. smp's binary
Dice pools over the batch and is 0 for a batch without kelp (no gradient at all), so it is
paired with BCE, which always pulls false alarms down. Every loss ignores pixels whose
target is :data:`~kelp.cnn.data.IGNORE` (batch padding).
"""

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from kelp.cnn.config import LossName
from kelp.cnn.data import IGNORE
from kelp.registry import Registry

__all__ = ["LOSSES", "make_loss"]

# name -> factory; the names are those of LossName (a test checks). smp is imported on use.
_LOSSES: Registry[Callable[[], nn.Module]] = Registry("loss")


class _Sum(nn.Module):
    def __init__(self, *parts: nn.Module) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack([part(logits, target) for part in self.parts]).sum()


class _Bce(nn.Module):
    """BCE averaged over the labelled pixels only (smp's averages over padding too)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != IGNORE
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits, target.clamp(min=0), reduction="none"
        )
        return (loss * valid).sum() / valid.sum().clamp(min=1)


@_LOSSES.register("dice_bce")
def _dice_bce() -> nn.Module:
    return _Sum(_dice(), _Bce())


@_LOSSES.register("dice")
def _dice() -> nn.Module:
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss("binary", from_logits=True, ignore_index=IGNORE)


_LOSSES.register("bce", _Bce)


@_LOSSES.register("focal")
def _focal() -> nn.Module:
    from segmentation_models_pytorch.losses import FocalLoss

    return FocalLoss("binary", ignore_index=IGNORE)


@_LOSSES.register("lovasz")
def _lovasz() -> nn.Module:
    from segmentation_models_pytorch.losses import LovaszLoss

    return LovaszLoss("binary", ignore_index=IGNORE)


#: Every loss name, the default first.
LOSSES = cast(tuple[LossName, ...], _LOSSES.names())


def make_loss(name: LossName) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called as ``loss(logits, target)``.

    Args:
        name: ``dice_bce``, ``dice``, ``bce``, ``focal`` or ``lovasz``.

    Returns:
        A module taking ``(N, 1, H, W)`` logits and ``(N, 1, H, W)`` float targets in
        ``{0, 1, IGNORE}``, returning a scalar.

    Raises:
        ConfigError: an unknown name (the message suggests close ones and lists all).
    """
    return _LOSSES.get(name)()
