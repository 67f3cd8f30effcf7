"""`kelp predict` in batches, with loader workers and two families at once, gives the logits
and masks of one tile at a time, and a tile that fails inside a batch costs only its mask.

The tiny run's masks are mostly empty (its models are weak and its threshold high), so the
base models' logits of every tile, as they reach the meta-model, are compared too: the
trees' bit for bit, the CNN's within 1e-5 (a batch of several tiles may take another
convolution algorithm than a batch of one: float-order noise).
"""

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kelp.cnn.ensemble import CnnEnsemble
from kelp.data.io import read_mask, write_image
from kelp.layout import RunLayout
from kelp.stacking.config import PredictConfig
from kelp.stacking.predict import _Masks, predict
from tests.conftest import make_dem, make_image

pytestmark = pytest.mark.slow
TinyRun = tuple[Path, dict[str, object]]
ONE_AT_A_TIME = {"batch_size": 1, "num_workers": 0, "overlap": False}
BATCHED = {"batch_size": 3, "num_workers": 2, "overlap": True}


def _mixed_sizes(run: Path, tmp_path: Path) -> Path:
    """The run's test tiles (64 px) beside tiles of two other sizes, interleaved by name."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted((run / "data" / "test_satellite").iterdir()):
        shutil.copy(path, folder / path.name)
    rng = np.random.default_rng(5)
    for name, (h, w) in [("B0", (80, 72)), ("B1", (80, 72)), ("C0", (37, 53)), ("Z0", (80, 72))]:
        dem = make_dem(rng, max(h, w))[:h, :w]
        write_image(folder / f"{name}_satellite.tif", make_image(rng, dem))
    return folder


Logits = dict[str, np.ndarray]


def _predict(
    data: Path, run: Path, out: Path, logits: Logits | None = None, **options: Any
) -> dict[str, Any]:
    """`kelp predict`; ``logits`` collects each tile's ``(M, H, W)`` base-model logits."""
    config = PredictConfig(data=data, out=out, device="cpu", on_error="skip", **options)
    if logits is None:
        return predict(config, RunLayout.of(run))
    write = _Masks.write

    def keep(self: _Masks, tile: Any, z: Any) -> None:
        if isinstance(z, np.ndarray):
            logits[tile.record.tile_id] = z.copy()
        write(self, tile, z)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Masks, "write", keep)
        return predict(config, RunLayout.of(run))


def _same_logits(got: Logits, expected: Logits, names: list[str]) -> None:
    assert sorted(got) == sorted(expected)
    for tile_id, z in expected.items():
        for m, name in enumerate(names):
            if name == "cnn":
                np.testing.assert_allclose(got[tile_id][m], z[m], atol=1e-5, err_msg=tile_id)
            else:
                assert np.array_equal(got[tile_id][m], z[m]), (tile_id, name)


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: read_mask(p) for p in sorted(out.glob("*_kelp.tif"))}


Reference = tuple[Path, Path, Logits, list[str]]


@pytest.fixture(scope="module")
def reference(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """``(tiles, masks, logits, models)``: mixed-size tiles predicted one tile at a time."""
    run = Path(str(tiny_run[1]["run_dir"]))
    tmp = tmp_path_factory.mktemp("batches")
    folder = _mixed_sizes(run, tmp)
    logits: Logits = {}
    manifest = _predict(folder, run, tmp / "one", logits, **ONE_AT_A_TIME)
    return folder, tmp / "one", logits, manifest["models"]


@pytest.mark.parametrize(
    "options",
    [BATCHED, {**BATCHED, "num_workers": 0}, {**ONE_AT_A_TIME, "batch_size": 8}],
    ids=["batched-workers-overlap", "batched-in-process", "batch-8-alone"],
)
def test_batched_masks_equal_one_tile_at_a_time(
    options: dict[str, Any], reference: Reference, tiny_run: TinyRun, tmp_path: Path
) -> None:
    folder, one, expected_logits, names = reference
    run = Path(str(tiny_run[1]["run_dir"]))
    logits: Logits = {}
    manifest = _predict(folder, run, tmp_path / "out", logits, **options)
    assert names == ["cnn", "lightgbm", "xgboost"]
    _same_logits(logits, expected_logits, names)
    expected = _masks(one)
    got = _masks(tmp_path / "out")
    assert sorted(got) == sorted(expected) and len(got) == manifest["n_tiles"] > 6
    for name, mask in expected.items():
        assert got[name].shape == mask.shape  # odd sizes keep theirs
        assert np.array_equal(got[name], mask), name
    assert got["C0_kelp.tif"].shape == (37, 53) and got["B0_kelp.tif"].shape == (80, 72)
    assert manifest["empty_masks"] == {}
    written = json.loads((one / "manifest.json").read_text())
    assert manifest["n_tiles"] == written["n_tiles"] and manifest["key"] == written["key"]


def test_a_tile_failing_inside_a_batch_costs_only_its_mask(
    reference: Reference, tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, one, expected_logits, names = reference
    run = Path(str(tiny_run[1]["run_dir"]))
    batches: list[list[str]] = []
    batch_logits = CnnEnsemble.batch_logits

    def fail_on_b1(self: CnnEnsemble, raws: list[np.ndarray], tile_ids: list[str]) -> np.ndarray:
        batches.append(list(tile_ids))
        if "B1" in tile_ids:
            raise RuntimeError("B1 cannot go through the CNN")
        return batch_logits(self, raws, tile_ids)

    monkeypatch.setattr(CnnEnsemble, "batch_logits", fail_on_b1)
    logits: Logits = {}
    manifest = _predict(folder, run, tmp_path / "out", logits, **BATCHED)
    assert ["B0", "B1", "Z0"] in batches  # it failed inside a batch of three...
    assert ["B0"] in batches and ["Z0"] in batches  # ...which was redone tile by tile
    assert manifest["empty_masks"] == {"B1": "RuntimeError: B1 cannot go through the CNN"}
    assert json.loads((tmp_path / "out" / "empty_masks.json").read_text()) == {
        "B1": "RuntimeError: B1 cannot go through the CNN"
    }
    got, expected = _masks(tmp_path / "out"), _masks(one)
    assert sorted(got) == sorted(expected)
    assert got["B1_kelp.tif"].shape == (80, 72) and not got["B1_kelp.tif"].any()
    for name, mask in expected.items():
        if name != "B1_kelp.tif":
            assert np.array_equal(got[name], mask), name
    _same_logits(logits, {t: z for t, z in expected_logits.items() if t != "B1"}, names)

    with pytest.raises(RuntimeError, match="B1 cannot go through the CNN"):
        predict(
            PredictConfig(data=folder, out=tmp_path / "stop", device="cpu", **BATCHED),
            RunLayout.of(run),
        )
    stopped = _masks(tmp_path / "stop")
    assert "B0_kelp.tif" in stopped and "B1_kelp.tif" not in stopped  # the tiles before it stay
