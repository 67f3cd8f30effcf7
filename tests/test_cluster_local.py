"""Stages on a LocalCluster of 2 worker processes (1 thread each): the same files as on one
machine, a worker killed mid-build loses and duplicates nothing, GPU tasks refused when no
worker has a GPU. One cluster for the module (it takes a few seconds to start); the whole
`kelp run --cluster local:2` is compared with a plain run in
``tests/pipeline/test_cluster_run.py``."""

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from kelp import cluster
from kelp.cluster import ClusterConfig, ClusterError, connect, gpu_resources, run_tasks
from kelp.data.folds import make_folds
from kelp.data.folds_file import write_folds
from kelp.errors import InputError, TileError
from kelp.features import build as build_module
from kelp.features.build import build_features
from kelp.features.config import FeatureConfig, FilterConfig, SamplingConfig
from kelp.features.worker import Job, process
from kelp.layout import RunLayout

pytestmark = pytest.mark.slow

# the functions below run on the workers, which cannot import this test module: send them
# by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SMALL = FeatureConfig(
    indices=("NDVI", "NDWI"),
    filters=FilterConfig(channels=("nir",), sigmas=(1.0,)),
    sampling=SamplingConfig(n_random=60),
)


@pytest.fixture(scope="module")
def local() -> Iterator[Any]:
    with connect(ClusterConfig(address="local:2", threads_per_worker=1)) as client:
        assert client is not None
        yield client


@pytest.fixture
def dataset(tiny_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    root = tiny_dataset(n_areas=4, dates=3, n_test=1)
    folds = write_folds(make_folds(root, k=2, seed=0), tmp_path / "folds.csv")
    return root, folds


def _build(root: Path, folds: Path, out: Path, **update: Any) -> dict[str, Any]:
    layout = RunLayout.of(out.parent, root, folds=folds, features=out)
    return build_features(SMALL.model_copy(update=update), layout)


def _files(out: Path) -> dict[str, bytes]:
    """Every file of a feature build, the manifest without its wall time and paths."""
    files = {p.name: p.read_bytes() for p in sorted((out / "table").iterdir())}
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("seconds", "data", "folds"):
        manifest.pop(key)
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def _threads(_: object) -> int:
    from kelp.tabular.models.base import available_cores

    return available_cores()


def _die_once(marker: Path, victim: str, job: Job) -> Any:
    """`process`, but the first time the victim tile is met its worker process dies."""
    if job.record.tile_id == victim and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return process(job)


def _fail_on(victim: str, job: Job) -> Any:
    if job.record.tile_id == victim:
        raise TileError(job.record.image, "unreadable on purpose")
    return process(job)


def test_cluster_is_in_use_with_its_threads(local: Any) -> None:
    assert cluster.current() is local
    assert cluster.total_threads(local) == 2
    results = [f.result() for _, f in run_tasks(_threads, [0, 1, 2])]
    assert results == [1, 1, 1]  # a tree model in a task uses its worker's one thread


def _environment() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


def test_local_workers_keep_glibc_malloc_and_their_threads(local: Any) -> None:
    # Dask's MALLOC_TRIM_THRESHOLD_=65536 made the feature build 1.8x slower; OMP_NUM_THREADS
    # follows the worker's threads (1 here) unless this environment sets it
    expected = os.environ.get("OMP_NUM_THREADS", "1")
    seen = list(local.run(_environment).values())
    assert seen == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": expected}] * 2


def test_feature_build_on_cluster_is_byte_identical(
    local: Any, dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    root, folds = dataset
    with connect(None):  # nested: the cluster stays in use
        pass
    assert cluster.current() is local
    on_cluster = _build(root, folds, tmp_path / "cluster")
    token = cluster._client.set(None)  # the same build on this machine, one process
    try:
        here = _build(root, folds, tmp_path / "here", workers=1)
    finally:
        cluster._client.reset(token)
    assert on_cluster["n_tiles"] == here["n_tiles"] == 12
    assert _files(tmp_path / "cluster") == _files(tmp_path / "here")


def test_worker_killed_mid_build_loses_and_duplicates_nothing(
    local: Any, dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, folds = dataset
    token = cluster._client.set(None)
    try:
        _build(root, folds, tmp_path / "here", workers=1)
    finally:
        cluster._client.reset(token)
    marker = tmp_path / "killed"
    victim = "A0200001"

    def dying(job: Job) -> Any:
        return _die_once(marker, victim, job)

    monkeypatch.setattr(build_module, "_process", dying)
    manifest = _build(root, folds, tmp_path / "cluster")
    assert marker.is_file()  # a worker did die, holding the victim's task
    assert manifest["skipped"] == []
    assert _files(tmp_path / "cluster") == _files(tmp_path / "here")
    assert sorted(p.name for p in (tmp_path / "cluster").rglob(".*")) == []  # no temp files
    local.wait_for_workers(2, timeout=60)  # the nanny starts a new worker
    assert cluster.total_threads(local) == 2


def test_a_failing_tile_on_cluster_keeps_the_others(
    local: Any, dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, folds = dataset

    def failing(job: Job) -> Any:
        return _fail_on("A0100002", job)

    monkeypatch.setattr(build_module, "_process", failing)
    manifest = _build(root, folds, tmp_path / "skip", on_error="skip")
    assert [s["tile_id"] for s in manifest["skipped"]] == ["A0100002"]
    assert "unreadable on purpose" in manifest["skipped"][0]["reason"]
    assert manifest["n_tiles"] == 11
    with pytest.raises(InputError, match=r"A0100002.*already written are kept"):
        _build(root, folds, tmp_path / "fail", on_error="fail")


def test_gpu_tasks_need_a_worker_with_a_gpu(local: Any) -> None:
    with pytest.raises(ClusterError, match=r"--resources GPU=1"):
        gpu_resources(local, "xgboost")
