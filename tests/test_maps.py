import numpy as np
import pytest

from kelp.maps import MapStore, logit, sigmoid


def test_round_trip_and_listing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = MapStore(tmp_path / "oof" / "m")
    p = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    store.write("BB000002", p, "probability")
    store.write("AA000001", np.full((2, 2), 100.0), "logit")
    np.testing.assert_allclose(store.read("BB000002"), p, atol=5e-4)
    np.testing.assert_array_equal(store.read("AA000001"), 60.0)  # clipped
    assert store.tile_ids() == ["AA000001", "BB000002"]
    assert store.has("AA000001")
    assert not store.has("CC000003")
    store.write_manifest({"kind": "logit", "model": "cnn", "folds": {"AA000001": 0}})
    assert store.manifest()["folds"] == {"AA000001": 0}


@pytest.mark.parametrize(
    ("values", "kind", "match"),
    [
        (np.zeros(3), "probability", r"\(H, W\)"),
        (np.full((2, 2), 1.5), "probability", "leaves"),
        (np.full((2, 2), np.nan), "logit", "NaN"),
    ],
)
def test_bad_maps(tmp_path, values: np.ndarray, kind: str, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        MapStore(tmp_path).write("X", values, kind)  # type: ignore[arg-type]


def test_missing_map_and_manifest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = MapStore(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no map for tile X"):
        store.read("X")
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        store.manifest()
    with pytest.raises(ValueError, match="kind"):
        store.write_manifest({"model": "x"})


def test_logit_sigmoid_inverse() -> None:
    p = np.array([1e-3, 0.2, 0.5, 0.9], np.float32)
    np.testing.assert_allclose(sigmoid(logit(p)), p, rtol=1e-5)
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()
    np.testing.assert_allclose(sigmoid(np.array([-1e4, 1e4])), [0.0, 1.0], atol=1e-20)
