"""Segmentation losses, all from segmentation-models-pytorch, all skipping padded pixels.

``dice_bce`` (the default) is the sum of smp's binary Dice and BCE losses. smp's binary
Dice pools over the batch and is 0 for a batch without kelp (no gradient at all), so it is
paired with BCE, which always pulls false alarms down. Every loss ignores pixels whose
target is :data:`~kelp.cnn.data.IGNORE` (batch padding).
"""

from collections.abc import Callable

import torch
from torch import nn

from kelp.cnn.config import LossName
from kelp.cnn.data import IGNORE

__all__ = ["LOSSES", "make_loss"]

LOSSES: tuple[LossName, ...] = ("dice_bce", "dice", "bce", "focal", "lovasz")


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


def make_loss(name: LossName) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called as ``loss(logits, target)``.

    Args:
        name: ``dice_bce``, ``dice``, ``bce``, ``focal`` or ``lovasz``.

    Returns:
        A module taking ``(N, 1, H, W)`` logits and ``(N, 1, H, W)`` float targets in
        ``{0, 1, IGNORE}``, returning a scalar.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    from segmentation_models_pytorch.losses import DiceLoss, FocalLoss, LovaszLoss

    parts: dict[str, Callable[[], nn.Module]] = {
        "dice": lambda: DiceLoss("binary", from_logits=True, ignore_index=IGNORE),
        "bce": _Bce,
        "focal": lambda: FocalLoss("binary", ignore_index=IGNORE),
        "lovasz": lambda: LovaszLoss("binary", ignore_index=IGNORE),
    }
    if name == "dice_bce":
        return _Sum(parts["dice"](), parts["bce"]())
    if name not in parts:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return parts[name]()
