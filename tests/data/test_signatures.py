import numpy as np

from kelp.bands import MISSING
from kelp.data.signatures import dem_embedding, dem_signature


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


def test_signature_keeps_heights_and_marks_voids() -> None:
    dem = np.zeros((64, 64), np.int32)
    dem[:20] = 30
    dem[40:, :8] = -5  # bathymetry reads as sea
    dem[60:, 60:] = MISSING
    sig = dem_signature(dem)
    assert sig.heights.dtype == np.int16
    assert sig.land == 20 * 64 and sig.has_shape
    assert (sig.heights[60:, 60:] == -1).all() and (sig.heights[40:, :8] == 0).all()
    assert not dem_signature(np.full((64, 64), MISSING, np.int32)).has_shape
