"""`kelp predict` on a LocalCluster of 2 workers (1 thread each): the same masks, manifest
and submission as in this process, bad tiles included; an error with ``on_error="fail"``
comes back as the same one-line error; an interrupted run's all-zero masks are still listed
when it resumes."""

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kelp.cluster import ClusterConfig, connect
from kelp.data.io import write_image
from kelp.errors import DatasetError
from kelp.layout import RunLayout
from kelp.stacking.config import PredictConfig
from kelp.stacking.predict import predict

pytestmark = pytest.mark.slow

TinyRun = tuple[Path, dict[str, object]]


LOCAL = ClusterConfig(address="local:2", threads_per_worker=1)


def _data(tiny_run: TinyRun, tmp_path: Path, truncate: bool = True) -> tuple[Path, list[str]]:
    """A copy of the run's dataset whose first test tile has no valid pixel (it is read, then
    refused when predicted) and whose second is truncated (refused when the dataset is
    scanned); the test tile ids."""
    data = tmp_path / "data"
    shutil.copytree(Path(str(tiny_run[1]["run_dir"])) / "data", data)
    images = sorted((data / "test_satellite").glob("*_satellite.tif"))
    assert len(images) >= 3  # two bad tiles and at least one good one
    write_image(images[0], np.full((7, 64, 64), -32768, np.int32))
    if truncate:
        images[1].write_bytes(images[1].read_bytes()[:100])
    return data, [p.name.split("_")[0] for p in images]


def _predict(tiny_run: TinyRun, data: Path, out: Path, **update: Any) -> dict[str, Any]:
    config = PredictConfig(data=data, out=out, device="cpu", **update)
    return predict(config, RunLayout.of(Path(str(tiny_run[1]["run_dir"]))))


def _masks(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_kelp.tif"))}


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in ("key", "n_tiles", "skipped", "empty_masks", "models", "decision"):
        assert a[key] == b[key], key


@pytest.mark.parametrize(
    "cluster",
    # two single-threaded workers; one worker whose two threads run tasks side by side, each
    # with the models it loaded
    [LOCAL, ClusterConfig(address="local:1", threads_per_worker=2)],
    ids=["2x1", "1x2"],
)
def test_predict_on_the_cluster_equals_predict_here(
    cluster: ClusterConfig, tiny_run: TinyRun, tmp_path: Path
) -> None:
    data, tests = _data(tiny_run, tmp_path)
    here = _predict(tiny_run, data, tmp_path / "here", on_error="skip")
    with connect(cluster):
        there = _predict(tiny_run, data, tmp_path / "there", on_error="skip")
    _same(here, there)
    assert set(there["empty_masks"]) == {tests[0]}
    assert [s["tile_id"] for s in there["skipped"]] == [tests[1]]
    assert _masks(tmp_path / "there") == _masks(tmp_path / "here")
    assert len(_masks(tmp_path / "there")) == len(tests) - 1
    written = json.loads((tmp_path / "there" / "empty_masks.json").read_text())
    assert written == there["empty_masks"]
    assert not (tmp_path / "there" / ".empty").exists()


def test_a_bad_tile_on_the_cluster_fails_as_here(tiny_run: TinyRun, tmp_path: Path) -> None:
    data, tests = _data(tiny_run, tmp_path, truncate=False)  # the worker refuses the tile
    with pytest.raises(DatasetError) as here:
        _predict(tiny_run, data, tmp_path / "here", on_error="fail")
    with connect(LOCAL), pytest.raises(DatasetError) as there:
        _predict(tiny_run, data, tmp_path / "there", on_error="fail")
    assert str(there.value) == str(here.value)
    assert f"{tests[0]}_satellite.tif" in str(there.value)
    assert "no valid pixel" in str(there.value) or "missing" in str(there.value)


def test_a_resumed_run_lists_the_empty_masks_of_the_interrupted_one(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    data, tests = _data(tiny_run, tmp_path)
    out = tmp_path / "out"
    first = _predict(tiny_run, data, out, on_error="skip")
    # as a run killed after the last mask: its notes are there, its manifest is not
    (out / "manifest.json").unlink()
    (out / "empty_masks.json").unlink()
    (out / ".partial.json").write_text(json.dumps({"key": first["key"]}))
    (out / ".empty").mkdir()
    (out / ".empty" / f"{tests[0]}.txt").write_text(first["empty_masks"][tests[0]])
    again = _predict(tiny_run, data, out, on_error="skip")
    assert again["empty_masks"] == first["empty_masks"]
    assert not (out / ".empty").exists()
