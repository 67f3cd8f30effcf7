"""CNN fixtures: a tiny run directory (dataset, folds, features) and a 1x1-conv stand-in."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from kelp.cnn import model as model_lib
from kelp.cnn.config import CnnConfig
from kelp.data.folds import make_folds
from kelp.data.folds_file import write_folds
from kelp.features.build import build_features
from kelp.features.config import FeatureConfig, FilterConfig, SamplingConfig
from kelp.layout import RunLayout

# One thread: the tensors here are tiny, and on a busy 2-core machine OpenMP threads that
# spin-wait for each other made a training step 20x slower than single-threaded.
torch.set_num_threads(1)

FEATURES = FeatureConfig(
    indices=("NDVI", "NDWI"),
    filters=FilterConfig(channels=("nir",), sigmas=(1.0,)),
    sampling=SamplingConfig(n_random=20),
)
CHANNELS = ("nir", "swir", "red", "NDVI", "dem_water", "nir_offset")

#: A tiny real smp U-Net (resnet18, 3 stages, thin decoder) for CPU tests.
TINY = CnnConfig(
    channels=CHANNELS,
    encoder="resnet18",
    encoder_depth=3,
    decoder_channels=(16, 8, 8),
    epochs=2,
    warmup_epochs=0.5,
    batch_size=4,
    tta=False,
    device="cpu",
    num_workers=0,
    cache_mb=64,
)


@pytest.fixture
def run_dir(tiny_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    """``(data, run)``: 8 train tiles (4 areas x 2 dates, 48 px) + 1 test tile, k = 2 folds,
    ``RUN/folds.csv`` and ``RUN/features/`` built with a small feature config."""
    data = tiny_dataset(n_areas=4, dates=2, n_test=1)
    run = tmp_path / "run"
    write_folds(make_folds(data, k=2, seed=0), run / "folds.csv")
    build_features(FEATURES, RunLayout.of(run, data))
    return data, run


class Conv1x1(nn.Module):
    """A per-pixel linear model: equivariant to every flip and rotation."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out


@pytest.fixture
def conv1x1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap the smp network for a 1x1 conv wherever the package builds a model."""

    def create(spec: model_lib.ModelSpec) -> model_lib.PaddedModel:
        return model_lib.PaddedModel(Conv1x1(spec.in_channels), spec.multiple)

    monkeypatch.setattr(model_lib, "create_model", create)


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty Hugging Face cache and HF_HUB_OFFLINE=1, whatever this machine holds."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
