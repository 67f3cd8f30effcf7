"""Test-time augmentation: exact inverses, and a no-op for an equivariant model."""

import pytest
import torch
from torch import nn

from kelp.cnn.model import PaddedModel
from kelp.cnn.tta import D4, IDENTITY, apply, invert, tta_logits
from tests.cnn.conftest import Conv1x1


@pytest.mark.parametrize("t", D4)
def test_invert_undoes_apply(t: tuple[int, bool]) -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert torch.equal(invert(apply(x, t), t), x)
    assert len(set(D4)) == 8


def test_tta_of_an_equivariant_model_is_the_plain_prediction() -> None:
    torch.manual_seed(0)
    model = PaddedModel(Conv1x1(3), 8).eval()
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        plain = model(x)[:, 0]
        torch.testing.assert_close(tta_logits(model, x, D4), plain)
        torch.testing.assert_close(tta_logits(model, x, IDENTITY), plain)


def test_tta_averages_a_non_equivariant_model() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(1, 1, 3, padding=1).eval()  # an asymmetric kernel is not equivariant
    x = torch.rand(1, 1, 6, 6)
    with torch.no_grad():
        by_hand = sum(invert(model(apply(x, t)), t) for t in D4) / 8
        torch.testing.assert_close(tta_logits(model, x, D4), by_hand[:, 0])
        assert not torch.allclose(tta_logits(model, x, D4), model(x)[:, 0])
