"""A fold's progress: the best epoch, patience and early stopping, and its saved state."""

import math

from kelp.cnn.fold import Progress
from kelp.cnn.history import EpochRow


def _row(epoch: int, dice: float = math.nan) -> EpochRow:
    return EpochRow(epoch, train_loss=0.5, val_loss=0.4, val_dice=dice, lr=1e-3, seconds=1.0)


def _run(dices: list[float], patience: int, epochs: int) -> tuple[Progress, list[bool]]:
    """Record epochs 1, 2, ... with these validation Dice scores, as training does: stop once
    the progress says it stopped early."""
    progress, best = Progress(), []
    for epoch, dice in enumerate(dices, start=1):
        if progress.stopped_early:
            break
        best.append(progress.record(_row(epoch, dice), True, patience, epochs))
    return progress, best


def test_best_epoch_is_the_highest_validation_dice_first_reached() -> None:
    progress, best = _run([0.2, 0.5, 0.5, 0.4, 0.6, 0.3], patience=0, epochs=10)
    assert best == [True, True, False, False, True, False]  # a tie is not better
    assert (progress.best_epoch, progress.best_score) == (5, 0.6)
    assert progress.bad_epochs == 1
    assert progress.epoch == 6
    assert [r.epoch for r in progress.rows] == [1, 2, 3, 4, 5, 6]
    assert not progress.stopped_early  # patience 0: never stop


def test_patience_stops_early_and_a_better_epoch_resets_it() -> None:
    progress, best = _run([0.2, 0.1, 0.3, 0.2, 0.1, 0.05, 0.9], patience=3, epochs=10)
    assert best == [True, False, True, False, False, False]  # epoch 7 never runs
    assert progress.stopped_early
    assert (progress.epoch, progress.best_epoch, progress.bad_epochs) == (6, 3, 3)
    progress, _ = _run([0.2, 0.1, 0.1, 0.3, 0.2, 0.1], patience=3, epochs=10)
    assert not progress.stopped_early  # 2 bad epochs, a better one, then 2 bad again
    assert progress.bad_epochs == 2


def test_running_out_of_patience_on_the_last_epoch_is_not_stopping_early() -> None:
    progress, _ = _run([0.5, 0.4, 0.3], patience=2, epochs=3)
    assert progress.bad_epochs == 2
    assert not progress.stopped_early
    progress, _ = _run([0.5, 0.4, 0.3], patience=2, epochs=4)
    assert progress.stopped_early


def test_without_validation_the_last_epoch_is_kept() -> None:
    progress = Progress()
    for epoch in range(1, 5):
        assert progress.record(_row(epoch), False, 1, 4)  # NaN Dice: the epoch decides
    assert (progress.best_epoch, progress.best_score, progress.bad_epochs) == (4, 4.0, 0)
    assert not progress.stopped_early


def test_saved_state_rebuilds_the_progress() -> None:
    progress, _ = _run([0.2, 0.5, 0.4], patience=2, epochs=10)
    progress.seconds = 12.5
    state = progress.to_state()
    assert state["rows"][1] == {"epoch": 2, "train_loss": 0.5, "val_loss": 0.4, "val_dice": 0.5,
                                "lr": 1e-3, "seconds": 1.0}  # fmt: skip
    rebuilt = Progress(**{**state, "rows": [EpochRow(**r) for r in state["rows"]]})  # as resume
    assert rebuilt == progress
