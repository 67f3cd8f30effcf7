"""Base-model families side by side: each family's work in order on a thread of its own, at
most ``lanes`` families at a time.

The tree libraries and torch release the GIL while they predict, so two families (say the
CNN of one batch and a tree family of the next) can run at once, each library on
``cores / lanes`` threads. This beats one family after another on every core: the libraries'
own threads never scale perfectly (2 threads give 1.7-1.9x), their barriers spin, and when
the cores are shared with other work a spinning thread holds a core its peer needs.
A family never runs twice at once: a LightGBM booster, for one, predicts under a lock and is
not safe to share, and each library's thread count is set on the model, not per call.
"""

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Self, TypeVar

__all__ = ["Lanes"]

T = TypeVar("T")


class Lanes:
    """Run work for named families, in submission order per family, ``lanes`` at a time.

    Args:
        names: the families.
        lanes: most families at work at once; 1 runs each piece of work in the calling
            thread as it is submitted (no thread at all).
    """

    def __init__(self, names: Sequence[str], lanes: int) -> None:
        self.lanes = lanes
        self._slots = threading.BoundedSemaphore(max(1, lanes))
        self._threads = {}
        if lanes > 1:
            self._threads = {
                name: ThreadPoolExecutor(1, thread_name_prefix=f"kelp-{name}") for name in names
            }

    def submit(self, name: str, work: Callable[[], T]) -> "Future[T]":
        """Start ``work()`` for family ``name`` after that family's earlier work.

        Returns:
            Its future: the result, or the exception ``work`` raised.
        """
        if self.lanes <= 1:
            future: Future[T] = Future()
            try:
                future.set_result(work())
            except Exception as error:  # handed to the caller through the future
                future.set_exception(error)
            return future
        return self._threads[name].submit(self._in_a_slot, work)

    def _in_a_slot(self, work: Callable[[], T]) -> T:
        with self._slots:
            return work()

    def close(self) -> None:
        """Drop work not yet started and wait for the work in progress."""
        for pool in self._threads.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
