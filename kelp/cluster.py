"""The optional Dask engine: ``[cluster] address`` and the few calls stages farm work out with.

With no address every stage runs on this machine as before (a process pool for the feature
build, folds one after the other). With ``address = "local:N"`` a ``LocalCluster`` of ``N``
worker processes is started for the command and closed after it; with a scheduler address
(``"tcp://host:8786"``, ``"tls://..."``) an existing cluster is used: one started by
``dask scheduler`` / ``dask worker``, dask-jobqueue or the Dask Kubernetes operator. The
workers must import the same ``kelp`` and see the run folder and dataset at the same paths
(a shared filesystem): they read tiles and write their results themselves, so no table rows,
maps or models travel through this process.

What runs where (see the README's scale guide):

- ``build-features``: one task per tile; the worker writes the tile's Parquet file and sends
  back its summary. The files and the manifest are byte-identical to the one-machine path.
- ``train-trees``: one task per fold (all stale models of the fold, then their dense
  out-of-fold maps from one channel stack per tile); a fold that asks for a GPU device
  requests the worker resource ``GPU=1``.
- ``train-cnn``: one task per fold (training, then its out-of-fold logits), ``GPU=1`` on
  CUDA; the out-of-fold manifest is merged here.
- ``stack`` and ``predict`` run in this process.

A worker lost mid-task is replaced by the scheduler, which reruns its task elsewhere (up to
``distributed.scheduler.allowed-failures`` times, 3 by default): every file is written
atomically under its final name and carries the key of what made it, so a rerun task
rewrites the same bytes and leaves no duplicate. Nothing here imports dask until an address
is set (``pip install 'kelp[dask]'``).
"""

import concurrent.futures as cf
import functools
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import Field, field_validator

from kelp._progress import say
from kelp.config import Frozen
from kelp.errors import KelpError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "ClusterConfig",
    "ClusterError",
    "bounded",
    "connect",
    "current",
    "gpu_resources",
    "parse_address",
    "run_tasks",
    "total_threads",
    "worker_threads",
]

T = TypeVar("T")
R = TypeVar("R")

_EXTRA = "pip install 'kelp[dask]'"
_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_client: ContextVar["Client | None"] = ContextVar("kelp_cluster", default=None)


class ClusterError(KelpError, ConnectionError):
    """The cluster cannot be reached or started."""


class ClusterConfig(Frozen):
    """Where stages run (``[cluster]``; `--cluster` on the command line).

    Attributes:
        address: ``None`` (this machine), ``"local:N"`` (a ``LocalCluster`` of ``N`` worker
            processes for the command) or a scheduler address such as ``"tcp://host:8786"``.
        threads_per_worker: threads of each ``local:N`` worker; default the usable cores
            divided by ``N`` (at least 1). Tree models in a task use their worker's threads
            unless ``[tabular] n_jobs`` says otherwise.
        timeout: seconds to wait for a scheduler before giving up.
    """

    address: str | None = None
    threads_per_worker: Annotated[int, Field(ge=1)] | None = None
    timeout: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_address(value)
        return value


def parse_address(address: str) -> tuple[str, int | str]:
    """``"local:4"`` -> ``("local", 4)``; ``"tcp://h:8786"`` -> ``("remote", "tcp://h:8786")``.

    Raises:
        ValueError: anything else (the config error names ``cluster.address``).
    """
    text = address.strip()
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if count.isdigit() and int(count) >= 1:
            return "local", int(count)
        raise ValueError(f"'local:N' needs N >= 1 workers, got {address!r}")
    if text.startswith(_SCHEMES) and len(text) > text.index("://") + 3:
        return "remote", text
    raise ValueError(
        f"expected 'local:N' (N worker processes on this machine) or a scheduler address "
        f"like 'tcp://host:8786', got {address!r}"
    )


def current() -> "Client | None":
    """The client of the cluster stages run on now; ``None``: this machine."""
    return _client.get()


@contextmanager
def connect(config: ClusterConfig | None) -> Iterator["Client | None"]:
    """Use the configured cluster inside the block (nothing when ``address`` is unset).

    A ``local:N`` cluster is started here and closed on leaving; a remote one is only
    connected to. Nested calls reuse the cluster already in use.

    Raises:
        ImportError: dask is not installed (names the extra).
        ClusterError: no scheduler answered at the address within ``timeout`` seconds.
    """
    if config is None or config.address is None or current() is not None:
        yield current()
        return
    kind, where = parse_address(config.address)
    try:
        import distributed
    except ImportError:
        raise ImportError(
            f"[cluster] address = {config.address!r} needs dask and distributed: {_EXTRA}"
        ) from None
    with _quiet_dask():
        if kind == "local":
            client = _local(distributed, int(where), config.threads_per_worker)
        else:
            client = _remote(distributed, str(where), config.timeout)
    token = _client.set(client)
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        link = client.dashboard_link if _has_dashboard(client) else "off (pip install bokeh)"
        say(
            f"cluster {config.address}: {len(workers)} worker(s), {total_threads(client)} "
            f"thread(s); dashboard {link}"
        )
        yield client
    finally:
        _client.reset(token)
        cluster = client.cluster
        client.close()
        if kind == "local" and cluster is not None:
            cluster.close()


def _local(distributed: Any, workers: int, threads: int | None) -> "Client":
    """A LocalCluster whose workers run kelp's tasks at the speed of a process pool.

    Two of Dask's worker defaults are changed: ``MALLOC_TRIM_THRESHOLD_=65536`` (glibc hands
    freed memory back at once, so every tile's temporaries are page-faulted in again: the
    feature build ran 1.8x slower with it, 40.3 s against 22.3 s for 300 tiles) is unset,
    and ``OMP_NUM_THREADS`` & co. (1 by default) follow the worker's threads, so that torch
    in a CNN task uses them; a value set in this environment is kept. The sampling profiler
    (every 10 ms) is off.
    """
    import dask

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = threads or max(1, (cores or 1) // workers)
    env = {k: os.environ.get(k, str(threads)) for k in _THREAD_VARIABLES}
    settings = {
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.worker.profile.enabled": False,
    }
    with dask.config.set(settings):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=":0",
            silence_logs=40,  # logging.ERROR: a lost worker is still reported
            env=env,
        )
    return distributed.Client(cluster)


def _remote(distributed: Any, address: str, timeout: float) -> "Client":
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"no Dask scheduler answered at {address} within {timeout:g} s ({error}); start "
            "one (`dask scheduler`, then `dask worker ADDRESS`), or fix [cluster] address / "
            "--cluster; nothing was written"
        ) from None


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """distributed's start-up chatter (one line per worker) is not ours to print."""
    import logging

    loggers = [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _has_dashboard(client: "Client") -> bool:
    try:
        return "dashboard" in client.scheduler_info(n_workers=0).get("services", {})
    except Exception:  # an old scheduler without the field: say nothing of a dashboard
        return False


def total_threads(client: "Client") -> int:
    """Threads over every worker of the cluster (at least 1)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def gpu_resources(client: "Client", what: str) -> dict[str, float]:
    """``{"GPU": 1}`` for a task that needs a GPU, after checking some worker offers one.

    Raises:
        ClusterError: no worker was started with a ``GPU`` resource (the task would wait
            forever).
    """
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers.values()):
        raise ClusterError(
            f"{what} runs on CUDA but no worker of the cluster offers a GPU: start GPU workers "
            "with `dask worker ADDRESS --resources GPU=1` (one per GPU), or set device = "
            '"cpu"'
        )
    return {"GPU": 1}


def worker_threads() -> int | None:
    """The threads of the Dask worker this code runs in; ``None`` outside one."""
    distributed = sys.modules.get("distributed")  # not imported: certainly not in a worker
    if distributed is None:
        return None
    try:
        return int(distributed.get_worker().state.nthreads)
    except ValueError:  # not inside a task
        return None


def run_tasks(
    work: Callable[[T], R],
    items: Sequence[T],
    *,
    in_flight: int | None = None,
    resources: dict[str, float] | None = None,
) -> Iterator[tuple[T, "cf.Future[R]"]]:
    """Run ``work(item)`` for each item as tasks on the current cluster; yields each item with
    its finished future, in the order they finish.

    ``in_flight`` bounds the tasks submitted at once (default: all). A task whose worker dies
    is rerun by the scheduler; a task that raises is yielded with that exception in its
    future. Leaving early (an exception in the caller) cancels the tasks not yet finished.

    Raises:
        RuntimeError: called with no cluster in use.
    """
    client = current()
    if client is None:
        raise RuntimeError("run_tasks needs a cluster: use it inside kelp.cluster.connect")
    executor = client.get_executor(pure=False, resources=resources)
    yield from bounded(functools.partial(executor.submit, work), items, in_flight or len(items))


def bounded(
    submit: Callable[[T], "cf.Future[R]"], items: Iterable[T], limit: int
) -> Iterator[tuple[T, "cf.Future[R]"]]:
    """Submit ``items`` (``submit(item)`` returns a future) with at most ``limit`` pending;
    yield each with its finished future, in the order they finish. Leaving early cancels
    the futures not yet finished."""
    pending: dict[cf.Future[R], T] = {}
    queue = iter(items)
    try:
        for item in queue:
            pending[submit(item)] = item
            if len(pending) >= limit:
                break
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future
                for nxt in itertools.islice(queue, 1):
                    pending[submit(nxt)] = nxt
    finally:
        for future in pending:
            future.cancel()
