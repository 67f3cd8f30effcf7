"""One training epoch and one validation pass: the inner loop of a fold.

Training steps once per batch: autocast forward (CUDA only), float32 loss, scaled backward,
optional gradient clipping, optimiser and schedule step. A NaN/inf loss stops the run rather
than silently training on garbage. Validation pools tp/fp/fn/tn over every pixel of every
validation tile (padding excluded), so its Dice is the global Dice of the metric.
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from kelp._progress import track
from kelp.cnn.data import IGNORE
from kelp.cnn.device import Precision
from kelp.errors import TrainingDivergedError
from kelp.metrics import Counts

__all__ = ["Loss", "train_epoch", "validate"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Loader = DataLoader[tuple[torch.Tensor, torch.Tensor]]


def train_epoch(
    model: nn.Module,
    loader: Loader,
    loss_fn: Loss,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: Precision,
    grad_clip: float,
    label: str,
) -> float:
    """One pass over the training batches, stepping optimiser and schedule per batch.

    Args:
        model: the network, put in training mode.
        loader: ``(images, masks)`` batches.
        loss_fn: ``loss(logits, target)``.
        optimizer: the optimiser.
        scheduler: stepped after every optimiser step.
        scaler: gradient scaler (a no-op unless float16).
        device: where the model is.
        precision: autocast settings.
        grad_clip: global gradient-norm limit; 0 = none.
        label: names the epoch in the progress bar and errors, e.g. ``"fold 0 epoch 3"``.

    Returns:
        The mean loss per tile.

    Raises:
        TrainingDivergedError: a NaN/inf loss.
    """
    model.train()
    dtype = precision.dtype
    total, n = 0.0, 0
    for images, masks in track(loader, label, total=len(loader)):
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True).unsqueeze(1)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"{label}: the training loss is {loss.item()}; lower lr or keep grad_clip on"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total += float(loss.item()) * len(images)
        n += len(images)
    return total / max(n, 1)


def validate(
    model: nn.Module,
    loader: Loader,
    loss_fn: Loss,
    device: torch.device,
    precision: Precision,
) -> tuple[float, Counts]:
    """Mean loss and pooled kelp counts (logit > 0, i.e. p > 0.5) over validation tiles.

    Args:
        model: the network, put in eval mode.
        loader: ``(images, masks)`` batches without augmentation.
        loss_fn: ``loss(logits, target)``.
        device: where the model is.
        precision: autocast settings.

    Returns:
        ``(mean loss per tile, counts)``; ``(nan, Counts())`` without tiles.
    """
    if not len(loader.dataset):  # type: ignore[arg-type]
        return math.nan, Counts()
    model.eval()
    dtype = precision.dtype
    total, n, counts = 0.0, 0, Counts()
    with torch.inference_mode():
        for images, masks in loader:
            images = images.to(device)
            target = masks.to(device).unsqueeze(1)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(images)
            total += float(loss_fn(logits.float(), target).item()) * len(images)
            n += len(images)
            valid = (masks != IGNORE).numpy()
            pred = (logits[:, 0] > 0).cpu().numpy()
            counts = counts + Counts.from_arrays(pred, masks.numpy() == 1, valid)
    return total / n, counts
