import numpy as np
import pytest

from kelp.features.config import SamplingConfig
from kelp.features.sampling import KINDS, sample_pixels


def _mask() -> np.ndarray:
    mask = np.zeros((40, 40), np.uint8)
    mask[10:13, 10:14] = 1
    return mask


def test_kelp_buffer_random_and_weights() -> None:
    mask = _mask()
    s = sample_pixels(mask, "AA000001", SamplingConfig(buffer=2, n_random=100), seed=0)
    kinds = np.array(KINDS)[s.kind]
    assert (kinds == "kelp").sum() == 12
    assert mask[s.rows[kinds == "kelp"], s.cols[kinds == "kelp"]].all()
    buffer = (s.rows[kinds == "buffer"], s.cols[kinds == "buffer"])
    assert not mask[buffer].any()
    # the ring of width 2 around a 3x4 block (Euclidean distance <= 2)
    # 7x8 box minus the block minus 3 pixels per corner farther than 2 (sqrt 5, sqrt 8)
    assert (kinds == "buffer").sum() == 7 * 8 - 12 - 4 * 3
    assert (kinds == "random").sum() == 100
    flat = s.rows.astype(int) * 40 + s.cols
    assert len(np.unique(flat)) == len(flat)  # no pixel twice
    rest = 40 * 40 - 12 - 32
    np.testing.assert_allclose(s.weight[kinds == "random"], rest / 100)
    assert (s.weight[kinds != "random"] == 1).all()
    # weighted count estimates the tile's pixel count exactly
    assert s.weight.sum() == pytest.approx(40 * 40)


def test_seeded_by_seed_and_tile_only() -> None:
    mask = _mask()
    cfg = SamplingConfig(n_random=50)
    a = sample_pixels(mask, "AA000001", cfg, seed=3)
    b = sample_pixels(mask, "AA000001", cfg, seed=3)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.cols, b.cols)
    c = sample_pixels(mask, "AA000002", cfg, seed=3)
    d = sample_pixels(mask, "AA000001", cfg, seed=4)
    assert not np.array_equal(a.rows * 40 + a.cols, c.rows * 40 + c.cols)
    assert not np.array_equal(a.rows * 40 + a.cols, d.rows * 40 + d.cols)


def test_no_kelp_and_small_tiles() -> None:
    empty = np.zeros((5, 5), np.uint8)
    s = sample_pixels(empty, "X", SamplingConfig(n_random=1000), seed=0)
    assert len(s) == 25  # fewer pixels than n_random: all of them, weight 1
    assert set(np.array(KINDS)[s.kind]) == {"random"}
    np.testing.assert_allclose(s.weight, 1.0)


def test_dense_keeps_every_pixel() -> None:
    s = sample_pixels(_mask(), "X", SamplingConfig(dense=True), seed=0)
    assert len(s) == 1600
    assert set(np.array(KINDS)[s.kind]) == {"dense"}
    np.testing.assert_array_equal(s.rows[:41], [0] * 40 + [1])
