"""The errors users meet, in one place: every message names the file or value and what to do.

The CLI prints any :class:`KelpError` (and the ``OSError`` of a file that cannot be read) as
one red line and exits with status 1; anything else is a bug and keeps its traceback.

::

    KelpError
    ├── InputError              a file or value of the data cannot be used
    │   ├── TileError           one tile (stages with ``on_error = "skip"`` leave it out)
    │   ├── DatasetError        every problem found in a dataset, listed
    │   └── StaleInputError     inputs that do not belong together (names the command to rerun)
    ├── ConfigError             a config key, value or name (with the valid ones)
    ├── DeviceError             a requested device that cannot be used here
    ├── WeightsUnavailableError pretrained weights neither cached nor downloadable (an OSError)
    └── TrainingDivergedError   the training loss became NaN or infinite

All but :class:`WeightsUnavailableError` are also ``ValueError`` s, as they were in v0.1.
"""

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "ConfigError",
    "DatasetError",
    "DeviceError",
    "InputError",
    "KelpError",
    "StaleInputError",
    "TileError",
    "TrainingDivergedError",
    "WeightsUnavailableError",
    "unknown_name",
]


class KelpError(Exception):
    """Base of every error whose message is meant for the user, not for a traceback."""


class InputError(KelpError, ValueError):
    """A data file or value cannot be used; the message names it and what to do."""


class TileError(InputError):
    """A tile file is unreadable or does not hold what a Kelp Wanted tile must hold.

    Attributes:
        path: the file.
        problem: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DatasetError(InputError):
    """A dataset cannot be used; the message lists every problem found (20 at most).

    Attributes:
        problems: every problem, each printable as one line.
    """

    def __init__(self, problems: Sequence[object]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the dataset:\n{lines}{more}")


class StaleInputError(InputError):
    """Inputs that do not belong together; the message names the command to rerun."""


class ConfigError(KelpError, ValueError):
    """A config file, key, value or name is wrong; the message names it and the valid ones."""


class DeviceError(KelpError, ValueError):
    """A requested device cannot be used here; the message says what to use instead."""


class WeightsUnavailableError(KelpError, OSError):
    """Pretrained encoder weights are neither cached nor downloadable right now."""


class TrainingDivergedError(KelpError, ValueError):
    """The training loss became NaN or infinite; the message says which fold and epoch."""


def unknown_name(kind: str, name: str, valid: Iterable[str], extra: str = "") -> ConfigError:
    """The one "unknown X" error: ``unknown model 'xgbost'; did you mean 'xgboost'? valid: ...``.

    Args:
        kind: what was asked for, e.g. ``"model"``, ``"spectral index"``.
        name: the name given.
        valid: every valid name.
        extra: appended to the valid list, e.g. ``" (or 'all')"``.

    Returns:
        The error, to be raised by the caller.
    """
    valid = list(valid)
    by_lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(by_lower[c]) for c in close)}? " if close else ""
    return ConfigError(f"unknown {kind} {name!r}; {hint}valid: {', '.join(valid)}{extra}")
