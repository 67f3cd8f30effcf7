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
:class:`~kelp.errors.InputError`. When no area split leaves kelp on both sides of
the inner split (fewer than two kelp areas), the fold fits on every training tile and keeps
its last epoch, with a warning: choosing on kelp-free tiles would pick "never kelp".

Reproducibility. Everything is seeded from ``seed`` and the fold; on CPU torch runs its
deterministic algorithms, so a rerun (or a resumed run) gives identical weights. On CUDA the
run is seeded but not bit-exact (cuDNN autotuning and atomics).

Re-running with the same inputs and config does nothing for folds already finished (their
``fold.json`` holds the run key); a changed config or input retrains.
"""

import functools
import json
import math
import shutil
import time
from collections.abc import Sequence
from typing import Any

from kelp._files import atomic_path
from kelp._progress import say, track
from kelp.artifacts import read_marker
from kelp.cluster import current, gpu_resources, run_tasks
from kelp.cnn import model as model_lib
from kelp.cnn.channels import ChannelSource, check_channels
from kelp.cnn.checkpoint import save_checkpoint
from kelp.cnn.config import CnnConfig
from kelp.cnn.determinism import deterministic
from kelp.cnn.device import loader_workers, precision_for, resolve_device
from kelp.cnn.fold import (
    FoldParts,
    Progress,
    TrainContext,
    build_fold,
    fold_plan,
    resume,
    training_state,
)
from kelp.cnn.history import EpochRow, plot_curves, write_log
from kelp.cnn.inputs import load_inputs, trained_folds
from kelp.cnn.loop import train_epoch, validate
from kelp.cnn.manifests import checkpoint_meta, fold_summary, run_key, stage_manifest
from kelp.cnn.oof import oof_manifest, oof_metrics, predict_oof
from kelp.data.io import read_mask
from kelp.errors import ConfigError
from kelp.layout import RunLayout
from kelp.maps import MapStore, finish_store, open_store, store_manifest

__all__ = ["train_cnn"]


def train_cnn(
    config: CnnConfig, layout: RunLayout, *, folds: Sequence[int] | None = None
) -> dict[str, Any]:
    """Train the requested folds' U-Nets and write their out-of-fold logits.

    Args:
        config: the training config.
        layout: reads ``layout.data``, ``layout.folds`` and ``layout.features``; writes
            ``RUN/cnn`` and ``RUN/oof/cnn``.
        folds: folds to train; all when ``None``.

    Returns:
        The stage manifest, also written to ``RUN/cnn/manifest.json``: config, inputs, per
        fold results and the out-of-fold metrics (global Dice headline).

    Raises:
        FileNotFoundError: no feature manifest (run `kelp build-features`).
        InputError: no or a bad folds file (run `kelp data folds`), or a fold whose
            training tiles hold no kelp.
        StaleInputError: inputs that do not belong together.
        ConfigError: a channel not in the feature stack, or an unknown fold.
        DeviceError: ``cuda`` without a GPU.
        WeightsUnavailableError: ``imagenet`` weights that cannot be had offline.
        TrainingDivergedError: the loss became NaN/inf (lower ``lr``).
    """
    started = time.perf_counter()
    inputs = load_inputs(layout)
    check_channels(config.channels, inputs.features["feature_names"])
    chosen = _choose_folds(folds, inputs.k)
    for fold in trained_folds(layout):
        if fold >= inputs.k:  # from a split with more folds: never part of an ensemble
            say(f"removing {layout.cnn_fold(fold)}: fold {fold} is not in {inputs.folds_path}")
            shutil.rmtree(layout.cnn_fold(fold))
    device = resolve_device(config.device)
    model_lib.check_model(model_lib.ModelSpec.from_config(config))  # fail before any work
    precision = precision_for(config.amp, device)
    key = run_key(config, inputs)
    # every DataLoader worker (training and validation loaders) keeps a cache of its own:
    # each process gets its share of `cache_mb`, so that the total stays within it
    workers = loader_workers(config.num_workers, device)
    source = ChannelSource(
        inputs.feature_config,
        config.channels,
        inputs.band_order,
        config.cache_mb // (2 * workers + 1),
    )
    has_kelp = {t: bool(read_mask(r.mask).any()) for t, r in inputs.records.items() if r.mask}
    store = open_store(layout.oof("cnn"), key)
    previous = store_manifest(layout.oof("cnn"))
    oof_folds: dict[str, int] = dict(previous["folds"]) if previous else {}
    ctx = TrainContext(inputs, config, key, layout, source, has_kelp, device, precision)
    client = current()
    if client is None:
        for k in chosen:
            if _fold(ctx, store, oof_folds, k):
                oof_folds = _record_oof(ctx, k, store, oof_folds)
    else:  # one task per fold; each writes its checkpoints and maps, the manifest is ours
        resources = gpu_resources(client, "the CNN") if device.type == "cuda" else None
        work = functools.partial(_fold, ctx, store, dict(oof_folds))
        tasks = run_tasks(work, chosen, resources=resources)
        for k, future in track(tasks, "training CNN folds on the cluster", total=len(chosen)):
            if future.result():
                oof_folds = _record_oof(ctx, k, store, oof_folds)
            say(f"fold {k}: trained on the cluster")
    metrics = oof_metrics(store, oof_folds, inputs) if oof_folds else None
    if oof_folds:
        finish_store(store, oof_manifest(config, inputs, key, oof_folds, metrics))
    manifest = stage_manifest(ctx, oof_folds, metrics, started)
    with atomic_path(layout.cnn / "manifest.json") as tmp:
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
        raise ConfigError(
            f"fold(s) {bad or '(none)'} do not exist: the folds file has folds 0..{k - 1}"
        )
    return sorted(set(folds))


def _fold(ctx: TrainContext, store: MapStore, oof_folds: dict[str, int], k: int) -> bool:
    """Train fold ``k`` (resuming), then predict its held-out tiles if it trained or some
    lack its logits (``oof_folds``: ``{tile_id: fold}`` of the maps already written).

    Returns:
        Whether the fold's out-of-fold maps were (re)written.
    """
    with deterministic(ctx.device):
        trained = _train_fold(ctx, k)
    held = ctx.inputs.tiles_in(k)
    if not trained and all(oof_folds.get(t) == k for t in held):
        return False
    predict_oof(
        ctx.layout.cnn_best(k),
        ctx.config,
        [ctx.inputs.records[t] for t in held],
        ctx.source,
        store,
        ctx.device,
        ctx.precision,
        f"fold {k}: out-of-fold logits",
    )
    return True


def _record_oof(
    ctx: TrainContext, k: int, store: MapStore, oof_folds: dict[str, int]
) -> dict[str, int]:
    """``oof_folds`` with fold ``k``'s held-out tiles, saved in the store's partial manifest."""
    oof_folds = {t: f for t, f in oof_folds.items() if f != k}
    oof_folds.update({t: k for t in ctx.inputs.tiles_in(k)})
    finish_store(store, oof_manifest(ctx.config, ctx.inputs, ctx.key, oof_folds))
    return oof_folds


def _train_fold(ctx: TrainContext, k: int) -> bool:
    """Train fold ``k``, resuming its last checkpoint when it has one under this key.

    Returns:
        False when the fold had already finished under this key (nothing done).
    """
    summary_path = ctx.layout.cnn_fold(k) / "fold.json"
    summary = read_marker(summary_path)
    best = ctx.layout.cnn_best(k) / "config.json"
    if summary is not None and best.is_file() and summary.get("key") == ctx.key:
        say(f"fold {k}: already trained with this config (best epoch {summary['best_epoch']})")
        return False
    summary_path.unlink(missing_ok=True)
    plan = fold_plan(ctx, k)
    if plan.note:
        say(f"[yellow]warning:[/yellow] fold {k}: {plan.note}; keeping the last epoch")
    parts = build_fold(ctx, k, plan)
    progress = resume(ctx, k, parts)
    say(
        f"fold {k}: training on {len(parts.train_ids)} tiles, validating on "
        f"{len(parts.val_ids)} ({ctx.device.type}, {ctx.precision.name}, "
        f"{parts.spec.encoder} {parts.spec.arch})"
    )
    started = time.perf_counter() - progress.seconds
    while progress.epoch < ctx.config.epochs and not progress.stopped_early:
        _run_epoch(ctx, k, parts, progress, started)
    summary = fold_summary(ctx.key, k, plan, progress, parts.normaliser)
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return True


def _run_epoch(
    ctx: TrainContext, k: int, parts: FoldParts, progress: Progress, started: float
) -> None:
    """Train and score one epoch; refresh ``best/`` (when better), the log and ``last/``."""
    config, layout = ctx.config, ctx.layout
    epoch = progress.epoch + 1
    tick = time.perf_counter()
    parts.sampler.set_epoch(epoch)
    train_loss = train_epoch(
        parts.model,
        parts.loader,
        parts.loss_fn,
        parts.optimizer,
        parts.scheduler,
        parts.scaler,
        ctx.device,
        ctx.precision,
        config.grad_clip,
        f"fold {k} epoch {epoch}/{config.epochs}",
    )
    val_loss, counts = validate(
        parts.model, parts.val_loader, parts.loss_fn, ctx.device, ctx.precision
    )
    row = EpochRow(
        epoch=epoch,
        train_loss=train_loss,
        val_loss=val_loss,
        val_dice=counts.dice if parts.val_ids else math.nan,
        lr=float(parts.optimizer.param_groups[0]["lr"]),
        seconds=round(time.perf_counter() - tick, 3),
    )
    meta = checkpoint_meta(config, ctx.inputs, ctx.key, k, row)
    if progress.record(row, bool(parts.val_ids), config.patience, config.epochs):
        save_checkpoint(layout.cnn_best(k), parts.model, parts.spec, parts.normaliser, meta)
    progress.seconds = time.perf_counter() - started
    write_log(progress.rows, layout.cnn_fold(k) / "log.csv")
    plot_curves(progress.rows, layout.cnn_fold(k) / "curves.png", f"fold {k}", progress.best_epoch)
    save_checkpoint(
        layout.cnn_last(k),
        parts.model,
        parts.spec,
        parts.normaliser,
        meta,
        state=training_state(ctx.key, parts, progress),
    )
    say(
        f"fold {k} epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss "
        f"{val_loss:.4f}, val Dice {row.val_dice:.4f}, lr {row.lr:.2e}, {row.seconds:.1f} s"
        + (" *" if progress.best_epoch == epoch else "")
    )
    if progress.stopped_early:
        say(f"fold {k}: no better validation score for {config.patience} epochs; stopping")
