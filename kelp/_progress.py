"""The one place that prints: progress bars and short status lines, both on stderr.

Library code reports through :func:`track` and :func:`say` so that the CLI, tests and
notebooks control output in one spot (``set_quiet`` hides the bars), and stdout stays free
for results.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["console", "hushed", "say", "set_quiet", "track"]

T = TypeVar("T")

console = Console(stderr=True)
if not console.is_terminal:  # logs and pipes: tables should not be cut at 80 columns
    console.width = 120
_quiet = False
_hushed = 0


def set_quiet(quiet: bool) -> None:
    """Hide (or show again) progress bars; status lines and errors always print."""
    global _quiet
    _quiet = quiet


@contextmanager
def hushed() -> Iterator[None]:
    """Inside, the bars and status lines of the work a caller wraps (one trial of
    `kelp tune`, say) are not printed; warnings still are."""
    global _hushed
    _hushed += 1
    try:
        yield
    finally:
        _hushed -= 1


def say(message: str) -> None:
    """Print one status line on stderr (rich markup allowed)."""
    if _hushed and "warning" not in message:
        return
    console.print(message, soft_wrap=True)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield from ``items`` while drawing a progress bar with count, elapsed and ETA.

    Args:
        items: what to iterate over.
        description: the bar's label, e.g. ``"checking tiles"``.
        total: number of items when ``items`` has no ``len``.

    Yields:
        The items of ``items``, unchanged.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=_quiet or bool(_hushed),
        transient=False,
    )
    with progress:
        yield from progress.track(items, total=total, description=description)
