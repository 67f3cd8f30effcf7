"""Prepare the next item in a background thread while the caller works on this one.

Dense prediction alternates a tile's channel stack (numpy, scipy.ndimage and rasterio,
which release the GIL for most of it) with the model (whose libraries release it too): in
one thread ahead, the next tile's stack is computed while the model predicts this one.
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")
R = TypeVar("R")


def prefetched(items: Iterable[T], work: Callable[[T], R], ahead: int = 1) -> Iterator[R]:
    """``work(item)`` of each item, in order, up to ``ahead`` items computed in advance.

    An exception raised by ``work(item)`` is raised when that item is reached, as in a plain
    loop (``work`` should only read: the items after it may have been started).
    ``ahead=0`` is the plain loop (no thread). Closing the iterator early waits for the item
    in progress and starts no other.
    """
    if ahead <= 0:
        for item in items:
            yield work(item)
        return
    source = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="kelp-prefetch") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in source:
                pending.append(pool.submit(work, item))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
