"""Losses: finite, ignore padded pixels, and BCE keeps kelp-free batches honest."""

import pytest
import torch

from kelp.cnn.data import IGNORE
from kelp.cnn.losses import LOSSES, make_loss


@pytest.mark.parametrize("name", LOSSES)
def test_losses_ignore_padding(name: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    target[1, :, 5:, :] = IGNORE
    loss_fn = make_loss(name)  # type: ignore[arg-type]
    loss = loss_fn(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None
    assert (logits.grad[1, :, 5:, :] == 0).all()  # padded pixels get no gradient
    assert logits.grad.abs().sum() > 0


def test_dice_bce_penalises_false_alarms_on_empty_batches() -> None:
    empty = torch.zeros(2, 1, 8, 8)
    dice, dice_bce = make_loss("dice"), make_loss("dice_bce")
    confident_kelp = torch.full((2, 1, 8, 8), 5.0)
    assert dice(confident_kelp, empty).item() == 0  # smp's Dice ignores empty batches
    assert dice_bce(confident_kelp, empty).item() > 1
    assert dice_bce(-confident_kelp, empty).item() < 0.01


def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="unknown loss 'hinge'; valid: dice_bce"):
        make_loss("hinge")  # type: ignore[arg-type]
