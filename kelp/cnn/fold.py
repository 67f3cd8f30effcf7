"""One fold's training parts: what the folds share, what one fold trains with, its progress.

:func:`build_fold` makes fold k's normaliser (statistics of every fold but k), seeds the
global generators with ``seed * 1000 + k`` and builds the model, optimiser, schedule,
gradient scaler, loss and loaders, in that order, so that a fold always starts from the same
draws. :func:`resume` then restores a ``last/`` checkpoint made under the same run key
(weights, optimiser, schedule, scaler, RNG states and :class:`Progress`), and
:func:`training_state` is what the next ``last/`` checkpoint saves for that.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from kelp._progress import say
from kelp.cnn import model as model_lib
from kelp.cnn.channels import ChannelSource
from kelp.cnn.checkpoint import load_state
from kelp.cnn.config import CnnConfig
from kelp.cnn.data import EpochSampler, TileDataset, collate
from kelp.cnn.determinism import rng_states, seed_everything, set_rng_states
from kelp.cnn.device import Precision, loader_workers
from kelp.cnn.history import EpochRow
from kelp.cnn.inputs import RunInputs
from kelp.cnn.loop import Loss
from kelp.cnn.losses import make_loss
from kelp.cnn.normalise import Normaliser
from kelp.cnn.optim import make_optimizer, make_scheduler
from kelp.data.split import FoldPlan, plan_fold
from kelp.layout import RunLayout

__all__ = [
    "FoldParts",
    "Progress",
    "TrainContext",
    "build_fold",
    "fold_plan",
    "resume",
    "training_state",
]

Loader = DataLoader[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TrainContext:
    """What every fold of one `train_cnn` call shares."""

    inputs: RunInputs
    config: CnnConfig
    key: str
    layout: RunLayout
    source: ChannelSource
    has_kelp: dict[str, bool]
    device: torch.device
    precision: Precision


@dataclass
class Progress:
    """A fold's training progress: what resuming restores besides the torch states."""

    epoch: int = 0
    best_score: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    rows: list[EpochRow] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        """A plain dict for the ``last/`` checkpoint's state."""
        d = asdict(self)
        d["rows"] = [asdict(r) for r in self.rows]
        return d

    def record(self, row: EpochRow, has_val: bool, patience: int, epochs: int) -> bool:
        """Count an epoch for early stopping.

        Args:
            row: the epoch.
            has_val: whether there are validation tiles (else the last epoch is kept).
            patience: epochs without a better score before stopping; 0 = never stop.
            epochs: the most epochs (stopping at the last one is not stopping early).

        Returns:
            Whether the epoch is the best so far.
        """
        self.rows.append(row)
        self.epoch = row.epoch
        score = _score(row, has_val)
        best = self.best_score is None or score > self.best_score
        if best:
            self.best_score, self.best_epoch, self.bad_epochs = score, row.epoch, 0
        else:
            self.bad_epochs += 1
        if patience and self.bad_epochs >= patience and row.epoch < epochs:
            self.stopped_early = True
        return best


def _score(row: EpochRow, has_val: bool) -> float:
    """Higher is better: validation global Dice, else the epoch (keep the last)."""
    return row.val_dice if has_val else float(row.epoch)


@dataclass(frozen=True)
class FoldParts:
    """What one fold trains with.

    Attributes:
        train_ids: the tiles it fits on.
        val_ids: the inner validation tiles its epochs are scored on (maybe none).
        normaliser: its input normalisation.
        spec: what builds its model.
        model: the network, on the device.
        optimizer: the optimiser.
        scheduler: the per-batch learning-rate schedule.
        scaler: the gradient scaler (a no-op unless float16 autocast).
        loss_fn: the training loss.
        sampler: orders the training tiles of each epoch.
        loader: the training batches.
        val_loader: the validation batches.
    """

    train_ids: list[str]
    val_ids: list[str]
    normaliser: Normaliser
    spec: model_lib.ModelSpec
    model: nn.Module
    optimizer: Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: Loss
    sampler: EpochSampler
    loader: Loader
    val_loader: Loader


def fold_plan(ctx: TrainContext, k: int) -> FoldPlan:
    """Fold ``k``'s fit, inner-validation and held-out tiles (never validated on fold k)."""
    assignment = ctx.inputs.assignment
    return plan_fold(assignment, k, ctx.has_kelp, ctx.config.stop_fraction, ctx.config.seed)


def build_fold(ctx: TrainContext, k: int, plan: FoldPlan) -> FoldParts:
    """Fold ``k``'s parts, freshly initialised from the fold's seed."""
    config = ctx.config
    train_ids, val_ids = list(plan.fit_tiles), list(plan.stop_tiles)
    normaliser = _normaliser(ctx, k)
    fold_seed = config.seed * 1000 + k
    seed_everything(fold_seed)
    spec = model_lib.ModelSpec.from_config(config)
    model = model_lib.create_model(spec).to(ctx.device)
    optimizer = make_optimizer(model, config)
    steps = config.steps_per_epoch or math.ceil(len(train_ids) / config.batch_size)
    scheduler = make_scheduler(optimizer, config, steps)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.precision.scaled)
    loss_fn = make_loss(config.loss)
    sampler, loader, val_loader = _loaders(ctx, normaliser, train_ids, val_ids, fold_seed)
    return FoldParts(
        train_ids=train_ids,
        val_ids=val_ids,
        normaliser=normaliser,
        spec=spec,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loss_fn=loss_fn,
        sampler=sampler,
        loader=loader,
        val_loader=val_loader,
    )


def _normaliser(ctx: TrainContext, k: int) -> Normaliser:
    config = ctx.config
    normaliser = Normaliser.from_stats(
        config.normalisation,
        config.channels,
        ctx.inputs.normalisation_stats(k),
        config.nan_fill,
    )
    if normaliser.dead_channels:
        say(
            f"[yellow]warning:[/yellow] fold {k}: channel(s) {normaliser.dead_channels} have "
            f"no valid pixel in the training folds; they are constant {config.nan_fill:g}"
        )
    return normaliser


def _loaders(
    ctx: TrainContext,
    normaliser: Normaliser,
    train_ids: list[str],
    val_ids: list[str],
    fold_seed: int,
) -> tuple[EpochSampler, Loader, Loader]:
    config, records = ctx.config, ctx.inputs.records
    train_set = TileDataset(
        [records[t] for t in train_ids],
        ctx.source,
        normaliser,
        config.augment,
        fold_seed,
        config.crop_size,
    )
    sampler = EpochSampler(
        [ctx.has_kelp[t] for t in train_ids],
        config.weighted_sampler,
        config.kelp_tile_weight,
        fold_seed,
        _draws(config, len(train_ids)),
    )
    workers = loader_workers(config.num_workers, ctx.device)
    # One loader per fold: persistent workers keep their tile caches across epochs.
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=workers > 0,
    )
    val_loader = DataLoader(
        TileDataset([records[t] for t in val_ids], ctx.source, normaliser),
        batch_size=config.batch_size,
        num_workers=workers if val_ids else 0,
        collate_fn=collate,
        persistent_workers=workers > 0 and bool(val_ids),
    )
    return sampler, loader, val_loader


def _draws(config: CnnConfig, n_tiles: int) -> int | None:
    """Training items per epoch when they are numbered draws (crops, fixed step counts)."""
    if config.steps_per_epoch is not None:
        return config.steps_per_epoch * config.batch_size
    return n_tiles if config.crop_size is not None else None


def resume(ctx: TrainContext, k: int, parts: FoldParts) -> Progress:
    """Restore fold ``k``'s ``last/`` checkpoint into ``parts`` if it has this run key.

    Returns:
        The restored progress, or a fresh one (nothing restored).
    """
    state = load_state(ctx.layout.cnn_last(k))
    if state is not None and state.get("key") == ctx.key:
        parts.model.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.scheduler.load_state_dict(state["scheduler"])
        parts.scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        rows = [EpochRow(**r) for r in state["progress"]["rows"]]
        progress = Progress(**{**state["progress"], "rows": rows})
        say(f"fold {k}: resuming after epoch {progress.epoch} of {ctx.config.epochs}")
        return progress
    if state is not None:
        say(f"fold {k}: the last checkpoint was made with another config; starting over")
    return Progress()


def training_state(key: str, parts: FoldParts, progress: Progress) -> dict[str, Any]:
    """What a ``last/`` checkpoint saves for :func:`resume` (the RNG states as of now)."""
    return {
        "key": key,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "rng": rng_states(),
        "progress": progress.to_state(),
    }
