"""Optimiser and learning-rate schedule, stepped once per batch.

- ``cosine`` (default): linear warm-up from ``lr / warmup_steps`` to ``lr`` over
  ``warmup_epochs``, then cosine decay to ``min_lr_ratio * lr`` at the last step. Warm-up
  keeps the first large-gradient steps of a randomly initialised decoder (and BatchNorm
  statistics that are still settling) from wrecking the encoder.
- ``onecycle``: torch's ``OneCycleLR`` peaking at ``lr`` after 30% of the steps.
"""

import math

import torch
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from kelp.cnn.config import CnnConfig

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(model: torch.nn.Module, config: CnnConfig) -> AdamW:
    """AdamW over every parameter with the config's ``lr`` and ``weight_decay``."""
    return AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: Optimizer, config: CnnConfig, steps_per_epoch: int) -> LRScheduler:
    """The per-batch learning-rate schedule.

    Args:
        optimizer: the optimiser whose learning rate is scheduled.
        config: ``schedule``, ``epochs``, ``warmup_epochs``, ``min_lr_ratio``, ``lr``.
        steps_per_epoch: batches per epoch.

    Returns:
        A scheduler to step after every optimiser step.
    """
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=0.3)
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
    floor = config.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
