"""`kelp train-cnn`: one U-Net per fold, then out-of-fold logits for its held-out tiles.

For each requested fold k the network fits on the other folds' tiles minus an inner,
area-grouped validation part of them (:func:`kelp.data.split.plan_fold`, the split the trees
early-stop on), normalised with the statistics of all folds but k. After each epoch it is
scored on those inner validation tiles: mean loss and the **global Dice** (pooled over
every pixel, logit > 0). The best epoch by that Dice is kept as ``best/`` and early stopping
watches it; fold k's tiles are never scored during training, so the out-of-fold logits that
``best/`` then writes to ``RUN/oof/cnn/`` are as honest as a test prediction. Every epoch
also refreshes ``last/`` (weights, optimiser, scheduler, gradient scaler, RNG states, log),
from which an interrupted fold resumes. ``fold.json`` lists the tiles fitted, validated on
and held out.

Folds without kelp. Training folds without kelp raise
:class:`~kelp.data.split.InputError`. When no area split leaves kelp on both sides of
the inner split (fewer than two kelp areas), the fold fits on every training tile and keeps
its last epoch, with a warning: choosing on kelp-free tiles would pick "never kelp".

Reproducibility. Everything is seeded from ``seed`` and the fold; on CPU torch runs its
deterministic algorithms, so a rerun (or a resumed run) gives identical weights. On CUDA the
run is seeded but not bit-exact (cuDNN autotuning and atomics).

Re-running with the same inputs and config does nothing for folds already finished (their
``fold.json`` holds the run key); a changed config or input retrains.
"""

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from kelp import __version__
from kelp._files import atomic_path
from kelp._progress import say
from kelp._provenance import git_state
from kelp.cnn import model as model_lib
from kelp.cnn.channels import ChannelSource, check_channels
from kelp.cnn.checkpoint import load_state, save_checkpoint
from kelp.cnn.config import CnnConfig
from kelp.cnn.data import EpochSampler, TileDataset, collate
from kelp.cnn.device import Precision, loader_workers, precision_for, resolve_device
from kelp.cnn.history import EpochRow, plot_curves, write_log
from kelp.cnn.inputs import CnnLayout, RunInputs, load_inputs
from kelp.cnn.loop import train_epoch, validate
from kelp.cnn.losses import make_loss
from kelp.cnn.normalise import Normaliser
from kelp.cnn.oof import oof_manifest, oof_metrics, predict_oof
from kelp.cnn.optim import make_optimizer, make_scheduler
from kelp.data.io import read_mask
from kelp.data.split import FoldPlan, plan_fold
from kelp.layout import short_hash
from kelp.maps import finish_store, open_store, store_manifest

__all__ = ["train_cnn"]


def train_cnn(
    data: str | os.PathLike[str],
    run: str | os.PathLike[str],
    config: CnnConfig | None = None,
    folds: Sequence[int] | None = None,
    folds_path: str | os.PathLike[str] | None = None,
    features_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train the requested folds' U-Nets and write their out-of-fold logits.

    Args:
        data: the dataset folder.
        run: the run directory (outputs under ``RUN/cnn`` and ``RUN/oof/cnn``).
        config: the training config; defaults when ``None``.
        folds: folds to train; all when ``None``.
        folds_path: the folds CSV; ``RUN/folds.csv`` by default.
        features_dir: the feature build; ``RUN/features`` by default.

    Returns:
        The stage manifest, also written to ``RUN/cnn/manifest.json``: config, inputs, per
        fold results and the out-of-fold metrics (global Dice headline).

    Raises:
        FileNotFoundError: no feature manifest (run `kelp build-features`).
        InputError: no or a bad folds file (run `kelp data folds`).
        StaleInputError: inputs that do not belong together.
        ConfigError: a channel not in the feature stack.
        DeviceError: ``cuda`` without a GPU.
        WeightsUnavailableError: ``imagenet`` weights that cannot be had offline.
        ValueError: an unknown fold.
        InputError: a fold whose training tiles hold no kelp.
        TrainingDivergedError: the loss became NaN/inf (lower ``lr``).
    """
    started = time.perf_counter()
    config = config or CnnConfig()
    run = Path(run)
    layout = CnnLayout(run)
    inputs = load_inputs(
        data,
        folds_path if folds_path is not None else run / "folds.csv",
        features_dir if features_dir is not None else run / "features",
    )
    check_channels(config.channels, inputs.features["feature_names"])
    chosen = _choose_folds(folds, inputs.k)
    for fold in layout.trained_folds():
        if fold >= inputs.k:  # from a split with more folds: never part of an ensemble
            say(f"removing {layout.fold(fold)}: fold {fold} does not exist in {inputs.folds_path}")
            shutil.rmtree(layout.fold(fold))
    device = resolve_device(config.device)
    model_lib.check_model(model_lib.ModelSpec.from_config(config))  # fail before any work
    precision = precision_for(config.amp, device)
    key = _run_key(config, inputs)
    source = ChannelSource(
        inputs.feature_config, config.channels, inputs.band_order, config.cache_mb
    )
    has_kelp = {t: bool(read_mask(r.mask).any()) for t, r in inputs.records.items() if r.mask}
    store = open_store(layout.oof, key)
    previous = store_manifest(layout.oof)
    oof_folds: dict[str, int] = dict(previous["folds"]) if previous else {}
    ctx = _Context(inputs, config, key, layout, source, has_kelp, device, precision)
    for k in chosen:
        with _deterministic(device):
            trained = _train_fold(ctx, k)
        held = inputs.tiles_in(k)
        if trained or any(oof_folds.get(t) != k for t in held):
            predict_oof(
                layout.best(k),
                config,
                [inputs.records[t] for t in held],
                source,
                store,
                device,
                precision,
                f"fold {k}: out-of-fold logits",
            )
            oof_folds = {t: f for t, f in oof_folds.items() if f != k}
            oof_folds.update({t: k for t in held})
            finish_store(store, oof_manifest(config, inputs, key, oof_folds))
    metrics = oof_metrics(store, oof_folds, inputs) if oof_folds else None
    if oof_folds:
        finish_store(store, oof_manifest(config, inputs, key, oof_folds, metrics))
    manifest = _stage_manifest(ctx, oof_folds, metrics, started)
    with atomic_path(layout.root / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    if metrics:
        say(
            f"out-of-fold global Dice {metrics['dice']:.4f} over {len(oof_folds)} tiles "
            f"(IoU {metrics['iou']:.4f}, precision {metrics['precision']:.4f}, "
            f"recall {metrics['recall']:.4f}, mean tile Dice {metrics['mean_tile_dice']:.4f})"
        )
    return manifest


def _choose_folds(folds: Sequence[int] | None, k: int) -> list[int]:
    if folds is None:
        return list(range(k))
    bad = [f for f in folds if not 0 <= f < k]
    if bad or not folds:
        raise ValueError(
            f"fold(s) {bad or '(none)'} do not exist: the folds file has folds 0..{k - 1}"
        )
    return sorted(set(folds))


def _run_key(config: CnnConfig, inputs: RunInputs) -> str:
    """What a fold's weights depend on: config, channel code, folds, tiles and statistics."""
    return short_hash(
        [
            config.training_key(),
            inputs.features["stack_hash"],
            inputs.folds_sha256,
            sorted(inputs.records),
            inputs.features.get("normalisation"),
        ]
    )


def _seed_everything(seed: int) -> None:
    # Our own randomness uses explicit generators; the global ones are seeded (and saved
    # for resuming) for any library code that draws from them.
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic torch algorithms on CPU for the duration, restored afterwards."""
    if device.type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _checkpoint_meta(
    config: CnnConfig, inputs: RunInputs, key: str, fold: int, row: EpochRow | None
) -> dict[str, Any]:
    return {
        "features": {
            "config": inputs.feature_config.model_dump(mode="json"),
            "stack_hash": inputs.features["stack_hash"],
            "band_order": list(inputs.band_order),
        },
        "training": {
            "config": config.model_dump(mode="json"),
            "key": key,
            "fold": fold,
            "folds_sha256": inputs.folds_sha256,
            "tta": config.tta,
            "epoch": row.epoch if row else 0,
            "val_dice": row.val_dice if row and not math.isnan(row.val_dice) else None,
            "val_loss": row.val_loss if row and not math.isnan(row.val_loss) else None,
        },
    }


@dataclass(frozen=True)
class _Context:
    """What every fold of one `train_cnn` call shares."""

    inputs: RunInputs
    config: CnnConfig
    key: str
    layout: CnnLayout
    source: ChannelSource
    has_kelp: dict[str, bool]
    device: torch.device
    precision: Precision


@dataclass
class _Progress:
    """A fold's training progress: what resuming restores besides the torch states."""

    epoch: int = 0
    best_score: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    rows: list[EpochRow] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [asdict(r) for r in self.rows]
        return d


def _score(row: EpochRow, has_val: bool) -> float:
    """Higher is better: validation global Dice, else the epoch (keep the last)."""
    return row.val_dice if has_val else float(row.epoch)


def _plan(ctx: _Context, k: int) -> FoldPlan:
    """Fold ``k``'s fit, inner-validation and held-out tiles (never validated on fold k)."""
    assignment = ctx.inputs.assignment
    return plan_fold(assignment, k, ctx.has_kelp, ctx.config.stop_fraction, ctx.config.seed)


def _train_fold(ctx: _Context, k: int) -> bool:
    """Train fold ``k``, resuming its last checkpoint when it has one under this key.

    Returns:
        False when the fold had already finished under this key (nothing done).
    """
    config, fold_dir = ctx.config, ctx.layout.fold(k)
    summary_path = fold_dir / "fold.json"
    if summary_path.is_file() and (ctx.layout.best(k) / "config.json").is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("key") == ctx.key:
            say(f"fold {k}: already trained with this config (best epoch {summary['best_epoch']})")
            return False
    summary_path.unlink(missing_ok=True)
    plan = _plan(ctx, k)
    train_ids, val_ids = list(plan.fit_tiles), list(plan.stop_tiles)
    if plan.note:
        say(f"[yellow]warning:[/yellow] fold {k}: {plan.note}; keeping the last epoch")
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
    fold_seed = config.seed * 1000 + k
    _seed_everything(fold_seed)
    spec = model_lib.ModelSpec.from_config(config)
    model = model_lib.create_model(spec).to(ctx.device)
    optimizer = make_optimizer(model, config)
    steps = math.ceil(len(train_ids) / config.batch_size)
    scheduler = make_scheduler(optimizer, config, steps)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.precision.scaled)
    loss_fn = make_loss(config.loss)
    records = ctx.inputs.records
    train_set = TileDataset(
        [records[t] for t in train_ids], ctx.source, normaliser, config.augment, fold_seed
    )
    sampler = EpochSampler(
        [ctx.has_kelp[t] for t in train_ids],
        config.weighted_sampler,
        config.kelp_tile_weight,
        fold_seed,
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
    progress = _Progress()
    state = load_state(ctx.layout.last(k))
    if state is not None and state.get("key") == ctx.key:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_states(state["rng"])
        rows = [EpochRow(**r) for r in state["progress"]["rows"]]
        progress = _Progress(**{**state["progress"], "rows": rows})
        say(f"fold {k}: resuming after epoch {progress.epoch} of {config.epochs}")
    elif state is not None:
        say(f"fold {k}: the last checkpoint was made with another config; starting over")
    say(
        f"fold {k}: training on {len(train_ids)} tiles, validating on {len(val_ids)} "
        f"({ctx.device.type}, {ctx.precision.name}, {spec.encoder} {spec.arch})"
    )
    started = time.perf_counter() - progress.seconds
    while progress.epoch < config.epochs and not progress.stopped_early:
        epoch = progress.epoch + 1
        tick = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss = train_epoch(
            model,
            loader,
            loss_fn,
            optimizer,
            scheduler,
            scaler,
            ctx.device,
            ctx.precision,
            config.grad_clip,
            f"fold {k} epoch {epoch}/{config.epochs}",
        )
        val_loss, counts = validate(model, val_loader, loss_fn, ctx.device, ctx.precision)
        row = EpochRow(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_dice=counts.dice if val_ids else math.nan,
            lr=float(optimizer.param_groups[0]["lr"]),
            seconds=round(time.perf_counter() - tick, 3),
        )
        progress.rows.append(row)
        progress.epoch = epoch
        score = _score(row, bool(val_ids))
        if progress.best_score is None or score > progress.best_score:
            progress.best_score, progress.best_epoch, progress.bad_epochs = score, epoch, 0
            save_checkpoint(
                ctx.layout.best(k),
                model,
                spec,
                normaliser,
                _checkpoint_meta(config, ctx.inputs, ctx.key, k, row),
            )
        else:
            progress.bad_epochs += 1
        if config.patience and progress.bad_epochs >= config.patience and epoch < config.epochs:
            progress.stopped_early = True
        progress.seconds = time.perf_counter() - started
        write_log(progress.rows, ctx.layout.fold(k) / "log.csv")
        plot_curves(
            progress.rows, ctx.layout.fold(k) / "curves.png", f"fold {k}", progress.best_epoch
        )
        save_checkpoint(
            ctx.layout.last(k),
            model,
            spec,
            normaliser,
            _checkpoint_meta(config, ctx.inputs, ctx.key, k, row),
            state={
                "key": ctx.key,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_states(),
                "progress": progress.to_state(),
            },
        )
        say(
            f"fold {k} epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss "
            f"{val_loss:.4f}, val Dice {row.val_dice:.4f}, lr {row.lr:.2e}, {row.seconds:.1f} s"
            + (" *" if progress.best_epoch == epoch else "")
        )
        if progress.stopped_early:
            say(f"fold {k}: no better validation score for {config.patience} epochs; stopping")
    best = progress.rows[progress.best_epoch - 1] if progress.best_epoch else None
    summary = {
        "key": ctx.key,
        "fold": k,
        "train_tiles": len(train_ids),
        "val_tiles": len(val_ids),
        "selected_by": "inner validation global Dice" if val_ids else "last epoch",
        "fit_tile_ids": list(plan.fit_tiles),
        "val_tile_ids": list(plan.stop_tiles),
        "val_areas": list(plan.stop_areas),
        "held_out_tile_ids": list(plan.held_out),
        "note": plan.note,
        "best_epoch": progress.best_epoch,
        "best_val_dice": best.val_dice if best and not math.isnan(best.val_dice) else None,
        "best_val_loss": best.val_loss if best and not math.isnan(best.val_loss) else None,
        "epochs_run": progress.epoch,
        "stopped_early": progress.stopped_early,
        "seconds": round(progress.seconds, 3),
        "dead_channels": normaliser.dead_channels,
    }
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return True


def _stage_manifest(
    ctx: _Context,
    oof_folds: dict[str, int],
    metrics: dict[str, Any] | None,
    started: float,
) -> dict[str, Any]:
    import segmentation_models_pytorch as smp

    folds = {}
    for k in range(ctx.inputs.k):
        path = ctx.layout.fold(k) / "fold.json"
        if path.is_file():
            summary = json.loads(path.read_text())
            if summary.get("key") == ctx.key:
                folds[str(k)] = summary
    return {
        "stage": "cnn",
        "key": ctx.key,
        "kelp_version": __version__,
        "versions": {"torch": torch.__version__, "segmentation_models_pytorch": smp.__version__},
        "git_commit": git_state()["commit"],
        "config": ctx.config.model_dump(mode="json"),
        "inputs": {
            "data": str(ctx.inputs.data.resolve()),
            "folds": str(ctx.inputs.folds_path.resolve()),
            "folds_sha256": ctx.inputs.folds_sha256,
            "features": str(ctx.inputs.features_dir.resolve()),
            "stack_hash": ctx.inputs.features["stack_hash"],
        },
        "device": ctx.device.type,
        "precision": ctx.precision.name,
        "k": ctx.inputs.k,
        "folds": folds,
        "oof": {
            "dir": str(ctx.layout.oof),
            "tiles": len(oof_folds),
            "metrics": metrics,
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
