import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from kelp.bands import MISSING
from kelp.data.grouping import dem_signature, group_areas, group_embeddings
from kelp.data.synth import area_dem, stress_dems
from tests.conftest import make_dem


@pytest.mark.parametrize("method", ["ncc", "cosine"])
def test_dates_of_an_area_group_together(method: str) -> None:
    rng = np.random.default_rng(1)
    dems, truth = [], []
    for area in range(12):
        dem = make_dem(rng, 96)
        for shift in range(3):
            noisy = np.roll(dem, shift, axis=0).copy()
            noisy[rng.random(dem.shape) < 0.02] = MISSING
            dems.append(noisy)
            truth.append(area)
    labels = group_areas(dems, threshold=0.97, method=method)  # type: ignore[arg-type]
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert labels[0] == 0  # numbered in order of appearance


def _stress_set(
    seed: int, n_areas: int, size: int, shift: float, tide: float, voids: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Dates of generator areas under :func:`stress_dems`, and each tile's true area."""
    rng = np.random.default_rng(seed)
    dems: list[np.ndarray] = []
    truth: list[int] = []
    for area in range(n_areas):
        canvas = area_dem(seed, area, size + round(shift * size))
        dates = int(rng.integers(2, 9))
        dems += list(
            stress_dems(canvas, size, dates, [seed, area], shift=shift, tide=tide, voids=voids)
        )
        truth += [area] * dates
    return dems, np.array(truth)


def _split_and_merged(truth: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> tuple[int, int]:
    """True areas whose kept tiles fall in several groups; groups holding several areas."""
    split = sum(len(set(labels[(truth == a) & keep])) > 1 for a in set(truth))
    merged = sum(len(set(truth[labels == g])) > 1 for g in set(labels))
    return split, merged


@pytest.fixture(scope="module")
def stressed() -> tuple[list[np.ndarray], np.ndarray]:
    """30 areas x 2-8 dates of 128 px: shifts up to 20%, tides, voids up to 30%."""
    return _stress_set(1, 30, 128, shift=0.2, tide=0.4, voids=0.3)


def test_shifted_flooded_voided_dates_are_recovered(
    stressed: tuple[list[np.ndarray], np.ndarray],
) -> None:
    dems, truth = stressed
    shaped = np.array([dem_signature(d).has_shape for d in dems])
    labels = group_areas(dems)
    split, merged = _split_and_merged(truth, labels, shaped)
    assert (split, merged) == (0, 0)
    assert adjusted_rand_score(truth, labels) >= 0.98
    # Tiles with no land in view (open sea) are singletons: they alone cost the rest.
    assert adjusted_rand_score(truth[shaped], labels[shaped]) == pytest.approx(1.0)


def test_cosine_method_splits_the_stress_case(
    stressed: tuple[list[np.ndarray], np.ndarray],
) -> None:
    dems, truth = stressed
    shaped = np.array([dem_signature(d).has_shape for d in dems])
    labels = group_areas(dems, method="cosine")
    split, _ = _split_and_merged(truth, labels, shaped)
    assert split >= 10
    assert adjusted_rand_score(truth, labels) < 0.6


def test_distinct_terrains_on_the_same_ramp_stay_apart() -> None:
    # Same coast direction and relief, different low hills: the heights of any two correlate
    # at > 0.97 (a heights-only match would merge all six), their slopes do not.
    y = np.linspace(-1, 1, 96)[:, None] * np.ones((1, 96))
    dems = []
    for seed in range(6):
        hills = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(96, 96)), 3)
        dems.append(np.maximum(0, np.rint(300 * (y + 0.05 * hills / hills.std()))).astype(int))
    assert len(set(group_areas(dems))) == 6
    assert group_areas([*dems, *dems]).tolist() == [0, 1, 2, 3, 4, 5] * 2  # repeats match


def test_open_sea_tiles_are_singletons() -> None:
    sea = np.zeros((64, 64), np.int32)
    missing = np.full((64, 64), MISSING, np.int32)
    rocks = sea.copy()
    rocks[10:13, 10:13] = [[3, 5, 4], [6, 9, 2], [1, 7, 8]]  # 9 land pixels: no shape
    labels = group_areas([sea, sea, missing, missing, rocks, rocks])
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert group_embeddings(np.zeros((3, 16)), threshold=0.9).tolist() == [0, 1, 2]


def test_cap_splits_a_large_group() -> None:
    canvas = area_dem(3, 2, 96 + 19)
    dems = list(stress_dems(canvas, 96, 10, 0, shift=0.2, tide=0.0, voids=0.0))
    assert len(set(group_areas(dems))) == 1
    capped = group_areas(dems, max_group_size=3)
    assert np.bincount(capped).max() <= 3


def test_cap_splits_a_chain_of_embeddings() -> None:
    base = np.ones(16)
    # each vector differs slightly from the previous: one chained component at 0.9
    chain = np.stack([base + 0.08 * i * np.eye(16)[i] for i in range(10)])
    assert len(set(group_embeddings(chain, threshold=0.9))) == 1
    capped = group_embeddings(chain, threshold=0.9, max_group_size=3)
    assert np.bincount(capped).max() <= 3


def test_tiles_of_other_shapes_never_match() -> None:
    dem = make_dem(np.random.default_rng(4), 64)
    labels = group_areas([dem, dem.copy(), dem[:, :60].copy()])
    assert labels.tolist() == [0, 0, 1]
    assert len(group_areas([])) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 1.0}, r"threshold must be in \(0, 1\), got 1.0"),
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\)"),
        ({"max_group_size": 0}, "max_group_size must be >= 1, got 0"),
        ({"method": "sift"}, "method must be one of"),
        ({"max_shift": 0.0}, r"max_shift must be in \(0, 0.5\]"),
        ({"max_shift": 0.6}, r"max_shift must be in \(0, 0.5\]"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    dem = make_dem(np.random.default_rng(0), 32)
    with pytest.raises(ValueError, match=match):
        group_areas([dem, dem], **kwargs)  # type: ignore[arg-type]
    if "threshold" in kwargs or "max_group_size" in kwargs:
        with pytest.raises(ValueError, match=match):
            group_embeddings(np.ones((2, 4)), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("dem", [np.zeros(64), np.zeros((4, 64)), np.zeros((2, 16, 16))])
def test_bad_dems(dem: np.ndarray) -> None:
    with pytest.raises(ValueError, match="at least 8 px a side"):
        group_areas([dem])
