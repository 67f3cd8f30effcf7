"""What every CLI command shares: turning input errors into one red line, and --folds."""

import contextlib
from collections.abc import Iterator

import typer

from kelp._progress import console

__all__ = ["errors", "parse_folds"]


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Print an input error (a ``ValueError``/``OSError`` naming the file or value, or a
    missing optional library) as one red line and exit with status 1, no traceback."""
    try:
        yield
    except (ValueError, OSError, ImportError) as error:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def parse_folds(text: str) -> list[int] | None:
    """``"all"`` -> ``None``; ``"0,2"`` -> ``[0, 2]``.

    Raises:
        typer.BadParameter: anything else (exit status 2 with the usage line).
    """
    if text.strip().lower() == "all":
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(f"expected 'all' or fold numbers like 0,2; got {text!r}")
    return [int(p) for p in parts]
