"""Benchmark the U-Net: training and inference throughput in tiles/s.

    python benchmarks/cnn.py                        # CPU, all threads
    python benchmarks/cnn.py --threads 1            # CPU, one thread (steadier on busy hosts)
    python benchmarks/cnn.py --device cuda          # on a GPU

Synthesises ``--tiles`` tiles of ``--size`` px (cached under ``--cache``), makes folds and
the default feature build, then times, after a warm-up:

1. training with the demo configuration (the ``[cnn]`` table of the `kelp demo` preset) at
   ``--size`` px: the full step (read + channels + normalise + augment + forward + backward +
   AdamW) and the network alone on a ready batch;
2. inference with the demo configuration at ``--size`` px, without and with 8x TTA;
3. inference (and a few training steps) with the default configuration (resnet34 U-Net,
   14 channels) on 350x350 tiles, the Kelp Wanted size.
"""

import argparse
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from kelp._progress import set_quiet
from kelp.cnn.channels import ChannelSource
from kelp.cnn.config import CnnConfig
from kelp.cnn.data import EpochSampler, TileDataset, collate
from kelp.cnn.device import resolve_device
from kelp.cnn.losses import make_loss
from kelp.cnn.model import ModelSpec, create_model
from kelp.cnn.normalise import Normaliser
from kelp.cnn.optim import make_optimizer
from kelp.cnn.tta import D4, IDENTITY, tta_logits
from kelp.config import load_config
from kelp.data.catalog import open_catalog
from kelp.data.folds import make_folds
from kelp.data.folds_file import write_folds
from kelp.data.synth import synthesize
from kelp.features.build import build_features
from kelp.features.config import FeatureConfig
from kelp.features.manifest import read_manifest
from kelp.layout import RunLayout


def _dataset(cache: Path, tiles: int, size: int) -> tuple[Path, Path]:
    data = cache / f"synth-{tiles}-{size}"
    if not (data / "metadata.csv").is_file():
        synthesize(data, tiles, seed=0, size=size, test_fraction=0.0)
    folds = cache / f"folds-{tiles}-{size}.csv"
    if not folds.is_file():
        write_folds(make_folds(data, k=5), folds)
    features = cache / f"features-{tiles}-{size}"
    if not (features / "manifest.json").is_file():
        build_features(FeatureConfig(), RunLayout.of(cache, data, folds=folds, features=features))
    return data, features


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(run: Callable[[], int], device: torch.device, warmup: int, repeats: int) -> float:
    """Tiles per second of ``run`` (which returns the tiles it processed)."""
    for _ in range(warmup):
        run()
    _sync(device)
    start = time.perf_counter()
    n = sum(run() for _ in range(repeats))
    _sync(device)
    return n / (time.perf_counter() - start)


def _train_step(
    model: torch.nn.Module, config: CnnConfig, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], int]:
    loss_fn = make_loss(config.loss)
    optimizer = make_optimizer(model, config)

    def step(images: torch.Tensor, masks: torch.Tensor) -> int:
        model.train()
        logits = model(images.to(device))
        loss = loss_fn(logits.float(), masks.to(device).unsqueeze(1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        return len(images)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=75)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=20, help="timed training batches")
    parser.add_argument("--cache", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    set_quiet(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, quiet=True)
    torch.manual_seed(0)

    data, features = _dataset(args.cache, args.tiles, args.size)
    manifest = read_manifest(features)
    stats = manifest["normalisation"]["train"]["channels"]
    feature_config = FeatureConfig.model_validate(manifest["config"])
    order = tuple(manifest["band_order"])
    records = open_catalog(data).train
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    what = f"{device.type}{threads}"
    print(f"device: {what}; torch {torch.__version__}")

    preset = files("kelp.pipeline").joinpath("presets/demo.toml")
    demo = load_config(Path(str(preset)), CnnConfig, "cnn")
    normaliser = Normaliser.from_stats(demo.normalisation, demo.channels, stats)
    source = ChannelSource(feature_config, demo.channels, order, cache_mb=0)
    dataset = TileDataset(records, source, normaliser, augment=True, seed=0)
    model = create_model(ModelSpec.from_config(demo)).to(device)
    step = _train_step(model, demo, device)
    sampler = EpochSampler([False] * len(records), weighted=False, kelp_weight=1.0, seed=0)
    loader = DataLoader(dataset, demo.batch_size, sampler=sampler, collate_fn=collate)
    batches = iter(())

    def full_step() -> int:
        nonlocal batches
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        return step(*batch)

    full = _rate(full_step, device, warmup=3, repeats=args.steps)
    images, masks = next(iter(loader))
    net_only = _rate(lambda: step(images, masks), device, warmup=2, repeats=args.steps)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"train, demo config ({demo.encoder} depth {demo.encoder_depth}, {params:.1f} M params, "
        f"{len(demo.channels)} channels, {args.size} px, batch {demo.batch_size}): "
        f"{full:.1f} tiles/s full step (read, channels, augment, fwd+bwd+AdamW), "
        f"{net_only:.1f} tiles/s network only"
    )

    def infer(model: torch.nn.Module, x: torch.Tensor, transforms: tuple) -> Callable[[], int]:
        model.eval()

        def run() -> int:
            with torch.inference_mode():
                tta_logits(model, x, transforms)
            return len(x)

        return run

    x = torch.stack([dataset[i][0] for i in range(16)]).to(device)
    plain = _rate(infer(model, x, IDENTITY), device, warmup=1, repeats=3)
    tta = _rate(infer(model, x, D4), device, warmup=1, repeats=1)
    print(
        f"inference, demo config ({args.size} px, batch 16): {plain:.1f} tiles/s, "
        f"{tta:.1f} tiles/s with 8x TTA"
    )

    default = CnnConfig()
    big = create_model(ModelSpec.from_config(default)).to(device)
    params = sum(p.numel() for p in big.parameters()) / 1e6
    batch = 4
    x350 = torch.rand(batch, len(default.channels), 350, 350, device=device)
    rate350 = _rate(infer(big, x350, IDENTITY), device, warmup=1, repeats=2)
    step350 = _train_step(big, default, device)
    m350 = (torch.rand(batch, 350, 350) > 0.99).float()
    train350 = _rate(lambda: step350(x350, m350), device, warmup=1, repeats=2)
    print(
        f"default config ({default.encoder} {default.arch}, {params:.1f} M params, "
        f"{len(default.channels)} channels, 350x350, batch {batch}): inference {rate350:.2f} "
        f"tiles/s ({rate350 / 8:.2f} with 8x TTA), training {train350:.2f} tiles/s (network only)"
    )


if __name__ == "__main__":
    main()
