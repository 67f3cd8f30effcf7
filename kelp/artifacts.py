"""Reading what a run wrote: a truncated or corrupt file is an error that names it.

A run's JSON records, ``.npy`` maps and pickled meta-models can be damaged after the fact (a
full disk, a copy cut short, a hand edit). Each reader here turns whatever the parser raises
into a :class:`~kelp.errors.StaleInputError` naming the file and the command that writes it
again, instead of a ``JSONDecodeError``, ``EOFError`` or ``UnpicklingError`` traceback.
"""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from kelp.errors import StaleInputError

__all__ = ["read_json", "read_marker", "read_npy", "read_pickle"]


def _corrupt(path: Path, error: Exception, rerun: str) -> StaleInputError:
    return StaleInputError(
        f"{path}: unreadable or truncated ({type(error).__name__}: {error}); {rerun}"
    )


def read_json(path: str | os.PathLike[str], rerun: str) -> dict[str, Any]:
    """A JSON object written by a stage.

    Args:
        path: the file (it must exist: callers check first where absence means "not yet").
        rerun: what to do about a damaged one, e.g. ``"rerun `kelp stack`"``.

    Raises:
        FileNotFoundError: no such file.
        StaleInputError: not a JSON object.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise _corrupt(path, error, rerun) from None
    if not isinstance(value, dict):
        raise StaleInputError(
            f"{path}: holds a JSON {type(value).__name__}, not an object; {rerun}"
        )
    return value


def read_marker(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A stage's "done" record (``metrics.json``, ``fold.json``, ...), or ``None`` when it is
    missing or damaged: either way the work it marks is redone, never trusted."""
    path = Path(path)
    try:
        return read_json(path, "")
    except (FileNotFoundError, StaleInputError):
        return None


def read_npy(path: str | os.PathLike[str], rerun: str) -> np.ndarray:
    """An array written with ``np.save`` (no pickles).

    Raises:
        FileNotFoundError: no such file.
        StaleInputError: truncated, empty or not an ``.npy`` file.
    """
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise _corrupt(path, error, rerun) from None


def read_pickle(path: str | os.PathLike[str], rerun: str) -> Any:
    """An object written with ``joblib.dump`` by this package (trusted: the run's own).

    Raises:
        FileNotFoundError: no such file.
        StaleInputError: truncated or not a joblib pickle.
    """
    import pickle

    import joblib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {rerun}")
    try:
        return joblib.load(path)
    except (EOFError, ValueError, pickle.UnpicklingError, KeyError, IndexError) as error:
        raise _corrupt(path, error, rerun) from None
