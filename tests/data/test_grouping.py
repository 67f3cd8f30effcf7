import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from kelp.data.bands import MISSING
from kelp.data.grouping import dem_embedding, group_areas
from tests.conftest import make_dem


def test_embedding_is_root_of_block_means() -> None:
    dem = np.zeros((64, 64), np.int32)
    dem[:32, :32] = 100
    dem[32:, 32:] = -20  # bathymetry counts as sea level
    np.testing.assert_allclose(dem_embedding(dem, grid=2, smooth=0), [10, 0, 0, 0])
    smoothed = dem_embedding(dem, grid=2, smooth=1.0)
    assert 0 < smoothed[1] < smoothed[0] < 10


def test_embedding_fills_missing_blocks_from_neighbours() -> None:
    dem = np.full((64, 64), 50, np.int32)
    dem[:32, :32] = MISSING
    np.testing.assert_allclose(dem_embedding(dem, grid=2), np.sqrt([50, 50, 50, 50]), rtol=1e-6)
    assert not dem_embedding(np.full((8, 8), MISSING, np.int32)).any()


def test_embedding_works_for_tiles_smaller_than_the_grid() -> None:
    assert dem_embedding(np.ones((10, 12), np.int32), grid=32).shape == (1024,)


def test_dates_of_an_area_group_together() -> None:
    rng = np.random.default_rng(1)
    embeddings, truth = [], []
    for area in range(12):
        dem = make_dem(rng, 96)
        for shift in range(3):
            noisy = np.roll(dem, shift, axis=0).copy()
            noisy[rng.random(dem.shape) < 0.02] = MISSING
            embeddings.append(dem_embedding(noisy))
            truth.append(area)
    labels = group_areas(np.stack(embeddings), threshold=0.97)
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert labels[0] == 0  # numbered in order of appearance


def test_flat_sea_tiles_are_singletons() -> None:
    labels = group_areas(np.zeros((3, 16)), threshold=0.9)
    assert sorted(labels) == [0, 1, 2]


def test_cap_splits_a_chain() -> None:
    base = np.ones(16)
    # each vector differs slightly from the previous: one chained component at 0.9
    chain = np.stack([base + 0.08 * i * np.eye(16)[i] for i in range(10)])
    assert len(set(group_areas(chain, threshold=0.9))) == 1
    capped = group_areas(chain, threshold=0.9, max_group_size=3)
    assert np.bincount(capped).max() <= 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threshold": 1.0}, "threshold"), ({"threshold": 0.9, "max_group_size": 0}, "max_group")],
)
def test_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        group_areas(np.ones((2, 4)), **kwargs)  # type: ignore[arg-type]
