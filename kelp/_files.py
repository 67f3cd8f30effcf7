"""Atomic file writes: a reader never sees a half-written file under its final name.

Every artifact of a run is written through :func:`atomic_path`: the data goes to a temporary
file ``.<name>.<random>.tmp`` in the same folder, which is then renamed onto the final name.

Test hook (fault injection). When the environment variable ``KELP_KILL_AFTER`` is set to
``"<pattern>:<n>"``, the process SIGKILLs itself right after the ``n``-th successful rename
(``n >= 1``) whose final path matches ``pattern``: no ``finally`` block, ``atexit`` handler or
signal handler runs, as when the machine loses power or the OOM killer strikes. ``pattern`` is
one or more path components separated by ``/`` (e.g. ``features/table``, ``tabular``,
``oof/cnn``, ``stacking``, ``predictions``, ``run.json``); it matches a final path holding
those components consecutively, so ``cnn`` matches ``RUN/cnn/fold=0/log.csv`` and
``RUN/oof/cnn/<tile>.npy``; the whole path is searched, so a pattern must not match the run
folder's own path (under ``/tmp/cnn/`` every write of a run counts for ``cnn``). Alternatives
are separated by ``|`` (``tabular|oof/lightgbm``: renames matching either count).
``"<pattern>:<n>:before"`` kills just *before* that rename instead: the temporary file is
complete but never reaches its final name.

Renames are counted per process. Child processes inherit the variable and count their own
renames: with ``[features] workers`` > 1 the Parquet tiles are renamed by the workers, so a
``features/table`` kill point then kills a worker, not ``kelp run``; use ``workers = 1`` for a
deterministic kill of the run itself. Renames that do not go through :func:`atomic_path`
(CNN checkpoint folder swaps, ``stacking/comparison.*`` renamed from ``report.*``, the
synthetic dataset's staging folder) are not counted. The variable is read once, when this
module is imported; unset, the hook costs one ``is None`` test before and after each rename.
"""

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["KILL_ENV", "TEMP_SUFFIX", "atomic_path"]

KILL_ENV = "KELP_KILL_AFTER"
TEMP_SUFFIX = ".tmp"  # temporary files are ".<final name>.<random>.tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On an exception (Ctrl-C included) the temporary file is removed and any existing file at
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if _kill is not None:
            _kill.count(path, before=True)
        os.replace(tmp, path)
        if _kill is not None:
            _kill.count(path, before=False)
    finally:
        tmp.unlink(missing_ok=True)


class _KillPoint:
    """The parsed ``KELP_KILL_AFTER``: which renames to count, and when to die."""

    def __init__(self, value: str) -> None:
        spec, sep, when = value.rpartition(":")
        if when in ("before", "after") and ":" in spec:
            pattern, _, count = spec.rpartition(":")
        else:
            pattern, count, when = spec, when, "after"
        alternatives = [tuple(p for p in alt.split("/") if p) for alt in pattern.split("|")]
        if not sep or not all(alternatives) or not count.isdigit() or int(count) < 1:
            raise ValueError(
                f"{KILL_ENV}={value!r}: expected '<pattern>:<n>' or '<pattern>:<n>:before' "
                "with n >= 1, e.g. 'features/table:3'"
            )
        self.alternatives = alternatives
        self.n = int(count)
        self.before = when == "before"
        self.seen = 0

    def matches(self, path: Path) -> bool:
        """Whether ``path`` holds one alternative's components consecutively."""
        names = path.parts
        return any(
            names[i : i + len(parts)] == parts
            for parts in self.alternatives
            for i in range(len(names) - len(parts) + 1)
        )

    def count(self, path: Path, before: bool) -> None:
        """Count a rename onto ``path`` (about to happen / done); die at the n-th."""
        if before == self.before and self.matches(path):
            self.seen += 1
            if self.seen == self.n:
                os.kill(os.getpid(), signal.SIGKILL)


_kill = _KillPoint(os.environ[KILL_ENV]) if os.environ.get(KILL_ENV) else None
