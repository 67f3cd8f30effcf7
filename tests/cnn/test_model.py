"""The model factory: any tile size, helpful misses, fast offline failure for imagenet."""

import time

import pytest
import torch

from kelp.cnn import model as model_lib
from kelp.cnn.model import ModelSpec, create_model, pad_amounts
from kelp.errors import WeightsUnavailableError

SPEC = ModelSpec("unet", "resnet18", 3, (16, 8, 8), in_channels=5)


@pytest.mark.parametrize("shape", [(48, 48), (50, 37), (8, 8), (350, 350)])
def test_any_tile_size_gives_logits_of_its_size(shape: tuple[int, int]) -> None:
    model = create_model(SPEC).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 5, *shape))
    assert out.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()


def test_unetplusplus_pads_to_its_multiple() -> None:
    spec = ModelSpec("unetplusplus", "resnet18", 3, (16, 8, 8), in_channels=2)
    with torch.no_grad():
        assert create_model(spec).eval()(torch.rand(1, 2, 45, 30)).shape == (1, 1, 45, 30)


def test_pad_amounts() -> None:
    assert pad_amounts(350, 32) == (1, 1)
    assert pad_amounts(48, 16) == (0, 0)
    assert pad_amounts(45, 8) == (1, 2)


def test_spec_json_roundtrip() -> None:
    assert ModelSpec.from_json(SPEC.to_json()) == SPEC


@pytest.mark.parametrize(
    ("encoder", "match"),
    [
        ("resnet35", r"unknown encoder 'resnet35'; did you mean .*'resnet34'.*valid: resnet18"),
        ("tu-notamodel_xyz", r"unknown encoder 'tu-notamodel_xyz'; valid: any timm model"),
    ],
)
def test_unknown_encoder_lists_valid_ones(encoder: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model(ModelSpec("unet", encoder, 3, (16, 8, 8), 3))


@pytest.mark.usefixtures("offline_hub")
def test_imagenet_offline_fails_fast_with_instructions() -> None:
    spec = ModelSpec("unet", "resnet18", 3, (16, 8, 8), 3, encoder_weights="imagenet")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match=r"HF_HUB_OFFLINE is set.*run once with"):
        create_model(spec)
    assert time.perf_counter() - start < 5
    with pytest.raises(OSError, match=r'encoder_weights = "none"'):
        create_model(spec)


@pytest.mark.usefixtures("offline_hub")
def test_imagenet_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_lib, "_hub_offline", lambda: False)
    monkeypatch.setattr(model_lib, "_hub_reachable", lambda: False)
    spec = ModelSpec("unet", "resnet18", 3, (16, 8, 8), 3, encoder_weights="imagenet")
    with pytest.raises(WeightsUnavailableError, match=r"hub cannot be reached.*hf download"):
        create_model(spec)
