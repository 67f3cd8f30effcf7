from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from kelp.data.io import write_mask
from kelp.data.tile import Tile
from kelp.metrics import MetricAccumulator
from kelp.stacking.evaluate import evaluate_masks
from kelp.stacking.postprocess import Decision
from kelp.stacking.visual import pick_across_range, prediction_grid


def _folders(tmp_path: Path, n: int = 5) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        truth = (rng.random((20, 24)) < 0.1 * i).astype(np.uint8)
        pred = (rng.random((20, 24)) < 0.15).astype(np.uint8) | truth * (i % 2)
        write_mask(tmp_path / "pred" / f"T{i:07d}_kelp.tif", pred)
        write_mask(tmp_path / "truth" / f"T{i:07d}_kelp.tif", truth)
        pairs.append((pred, truth))
    return tmp_path / "pred", tmp_path / "truth", pairs


def test_evaluate_agrees_with_the_metrics_module(tmp_path: Path) -> None:
    pred, truth, pairs = _folders(tmp_path)
    expected = MetricAccumulator()
    for i, (p, t) in enumerate(pairs):
        expected.update(p, t, tile_id=f"T{i:07d}")
    assert evaluate_masks(pred, truth) == expected.summary()


def test_evaluate_bad_inputs(tmp_path: Path) -> None:
    pred, truth, _ = _folders(tmp_path)
    (pred / "T0000001_kelp.tif").unlink()
    write_mask(pred / "X0000000_kelp.tif", np.zeros((20, 24), np.uint8))
    write_mask(pred / "T0000002_kelp.tif", np.zeros((10, 24), np.uint8))
    with pytest.raises(ValueError, match="cannot evaluate") as info:
        evaluate_masks(pred, truth)
    message = str(info.value)
    assert "1 tile(s) without a prediction" in message
    assert "T0000001" in message
    assert "X0000000" in message
    assert "shape (10, 24) differs" in message
    with pytest.raises(FileNotFoundError, match="prediction folder not found"):
        evaluate_masks(tmp_path / "nope", truth)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no <tile_id>_kelp.tif"):
        evaluate_masks(tmp_path / "empty", truth)


def test_decision_apply() -> None:
    prob = np.zeros((10, 10), np.float32)
    prob[1:4, 1:4] = 0.9  # 9 px component
    prob[7, 7] = 0.9  # 1 px component
    prob[0, 9] = 0.6  # on land
    land = np.zeros((10, 10), bool)
    land[0, 9] = True
    assert Decision(0.5).apply(prob, land).sum() == 11
    assert Decision(0.5, land_mask=True).apply(prob, land).sum() == 10
    assert Decision(0.5, land_mask=True, min_area=2).apply(prob, land).sum() == 9
    assert Decision(0.95).apply(prob, land).sum() == 0
    opened = Decision(0.5, morphology="open").apply(prob, land)
    assert opened[7, 7] == 0
    assert opened[2, 2] == 1


def test_pick_across_range() -> None:
    dice = [0.9, 0.1, 0.5, 0.7, 0.3]
    assert pick_across_range(dice, 3) == [1, 2, 0]  # worst, median, best
    assert sorted(pick_across_range(dice, 10)) == [0, 1, 2, 3, 4]


def test_prediction_grid_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(7000, 9000, (7, 16, 16)).astype(np.int32)
    truth = (rng.random((16, 16)) < 0.3).astype(np.uint8)
    tile = Tile("T0000001", image, truth, Affine.identity())
    out = prediction_grid([tile], [rng.random((16, 16))], [truth], tmp_path / "grid.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no true mask"):
        prediction_grid([Tile("X", image, None, Affine.identity())], [truth], [truth], out)
