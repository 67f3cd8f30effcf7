"""Normalisation statistics merged tile by tile: exact moments, a bounded order-free sample."""

import numpy as np
import pytest

from kelp.features import stats as stats_module
from kelp.features.sampling import KINDS
from kelp.features.stats import (
    Collector,
    Stats,
    TileSummary,
    normalisation,
    stats_pixels,
    summarise,
)

NAMES = ["a", "b", "empty"]


def _stacks(n: int = 5, seed: int = 0) -> list[np.ndarray]:
    """``n`` random ``(3, 20, 20)`` stacks on different scales, some NaN; channel 2 all NaN."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        stack = rng.normal(10.0 * t, 1.0 + t, (3, 20, 20))
        stack[1] = rng.exponential(1 + t, (20, 20))
        stack[:2][rng.random((2, 20, 20)) < 0.1] = np.nan
        stack[2] = np.nan
        out.append(stack)
    return out


def _at_stats_pixels(stack: np.ndarray) -> np.ndarray:
    return stack.reshape(len(stack), -1)[:, stats_pixels(stack.shape[1:])]


def test_stats_pixels_are_every_4th_pixel_each_way() -> None:
    stack = np.arange(2 * 9 * 10, dtype=np.float32).reshape(2, 9, 10)
    np.testing.assert_array_equal(_at_stats_pixels(stack), stack[:, ::4, ::4].reshape(2, -1))


def _summaries(stacks: list[np.ndarray], folds: list[int]) -> list[TileSummary]:
    kind = np.array([0, 0, 1, 2, 2, 2], np.uint8)
    return [
        summarise(f"T{t:07d}", fold, _at_stats_pixels(stack), kind, seed=0)
        for t, (stack, fold) in enumerate(zip(stacks, folds))
    ]


def test_summary_counts_rows_and_strided_pixels() -> None:
    stack = _stacks(1)[0]
    kind = np.array([0, 0, 1, 2, 2, 2], np.uint8)
    summary = summarise("T0000000", 1, _at_stats_pixels(stack), kind, seed=0)
    assert summary.rows == {"kelp": 2, "buffer": 1, "random": 3, "dense": 0}
    assert list(summary.rows) == list(KINDS)
    strided = stack[:, ::4, ::4].reshape(3, -1)
    np.testing.assert_array_equal(summary.count, (~np.isnan(strided)).sum(axis=1))
    assert summary.count[2] == 0
    assert summary.values.shape == (25, 3)  # fewer strided pixels than a tile offers: all
    assert len(summary.keys) == 25


def test_merged_moments_are_exact_for_every_fold_set() -> None:
    stacks, folds = _stacks(), [0, 1, 0, 2, 1]
    result = normalisation(_summaries(stacks, folds), {f: Stats.empty(3) for f in range(3)}, NAMES)
    assert set(result["without_fold"]) == {"0", "1", "2"}
    selections = {"train": [0, 1, 2], **{str(f): [g for g in range(3) if g != f] for f in range(3)}}
    for label, chosen in selections.items():
        got = result["train"] if label == "train" else result["without_fold"][label]
        picked = [s[:, ::4, ::4].reshape(3, -1) for s, f in zip(stacks, folds) if f in chosen]
        values = np.concatenate(picked, axis=1)
        assert got["tiles"] == len(picked)
        for i, name in enumerate(NAMES[:2]):
            channel = got["channels"][name]
            assert channel["valid_pixels"] == np.count_nonzero(~np.isnan(values[i]))
            assert channel["mean"] == pytest.approx(np.nanmean(values[i]), rel=1e-5, abs=1e-5)
            assert channel["std"] == pytest.approx(np.nanstd(values[i]), rel=1e-5, abs=1e-5)
            assert channel["q01"] <= channel["mean"] <= channel["q99"]
        empty = got["channels"]["empty"]
        assert empty == {"mean": None, "std": None, "q01": None, "q99": None, "valid_pixels": 0}


def test_merge_order_does_not_change_the_statistics() -> None:
    summaries = _summaries(_stacks(), [0, 1, 0, 1, 0])
    first = normalisation(summaries, {f: Stats.empty(3) for f in range(2)}, NAMES)
    again = normalisation(summaries[::-1], {f: Stats.empty(3) for f in range(2)}, NAMES)
    pairs = [("train", first["train"], again["train"])]
    pairs += [(f, first["without_fold"][f], again["without_fold"][f]) for f in ("0", "1")]
    for label, a, b in pairs:
        assert a["tiles"] == b["tiles"], label
        assert a["channels"]["empty"] == b["channels"]["empty"], label
        for name in NAMES[:2]:
            for key, value in a["channels"][name].items():
                assert b["channels"][name][key] == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_quantile_sample_keeps_the_smallest_keys_whatever_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stats_module, "_QUANTILE_SAMPLE", 40)
    summaries = _summaries(_stacks(), [0] * 5)  # 5 x 25 pixels offered
    merged = []
    for order in (summaries, summaries[::-1], summaries[2:] + summaries[:2]):
        stats = Stats.empty(3)
        for s in order:
            stats.add(s)
        merged.append(stats)
    keys = np.concatenate([s.keys for s in summaries])
    assert len(merged[0].keys) == 40
    np.testing.assert_array_equal(np.sort(merged[0].keys), np.sort(keys)[:40])
    for other in merged[1:]:
        np.testing.assert_array_equal(other.keys, merged[0].keys)
        np.testing.assert_array_equal(other.values, merged[0].values)


def test_tile_summary_json_round_trip() -> None:
    summary = _summaries(_stacks(1), [1])[0]
    back = TileSummary.from_json(summary.to_json())
    assert (back.tile_id, back.fold, back.rows) == (summary.tile_id, 1, summary.rows)
    for field in ("count", "total", "m2", "keys", "values"):
        np.testing.assert_array_equal(getattr(back, field), getattr(summary, field))


def test_collector_keeps_sums_per_tile_and_pixels_per_fold() -> None:
    summaries = _summaries(_stacks(), [0, 1, 0, 1, 1])
    collected = Collector(2, 3)
    for s in summaries:
        collected.keep(s)
    assert all(len(s.keys) == 0 and s.values.shape == (0, 3) for s in collected.summaries)
    assert [len(collected.samples[f].keys) for f in (0, 1)] == [2 * 25, 3 * 25]
    streamed = normalisation(collected.summaries, collected.samples, NAMES)
    whole = normalisation(summaries, {f: Stats.empty(3) for f in range(2)}, NAMES)
    assert streamed == whole


def test_merging_fold_samples_holds_no_copy_of_all_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five full fold samples merge into the train set's and each "all but k" sample with at
    most a few single samples' worth of new memory (a sample's values once, in float32)."""
    import tracemalloc

    cap, channels, folds = 2_000, 68, 5
    monkeypatch.setattr(stats_module, "_QUANTILE_SAMPLE", cap)
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(channels)]
    collected = Collector(folds, channels)
    for t in range(folds * 10):
        values = rng.normal(size=(channels, 256)).astype(np.float32)
        collected.keep(summarise(f"T{t:07d}", t % folds, values, np.zeros(0, np.uint8), seed=0))
    for stats in collected.samples.values():
        assert stats.values.dtype == np.float32
        assert len(stats.keys) == cap  # cut back to the cap before the merge is traced
    one_sample = cap * channels * 4
    tracemalloc.start()
    try:
        result = normalisation(collected.summaries, collected.samples, names)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["train"]["tiles"] == folds * 10
    assert peak < 6 * one_sample, f"merging held {peak / one_sample:.1f} samples"


def test_cut_back_sample_is_the_smallest_keys_of_all_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stats_module, "_QUANTILE_SAMPLE", 30)
    rng = np.random.default_rng(1)
    stats = Stats.empty(2)
    parts = [(rng.random(n), rng.normal(size=(n, 2)).astype(np.float32)) for n in (7, 0, 19, 12)]
    for keys, values in parts:
        stats.add_sample(keys, values)
    keys = np.concatenate([k for k, _ in parts])
    values = np.concatenate([v for _, v in parts])
    order = np.argsort(keys)[:30]
    np.testing.assert_array_equal(stats.keys, keys[order])
    np.testing.assert_array_equal(stats.values, values[order])
    assert stats.values.dtype == np.float32
