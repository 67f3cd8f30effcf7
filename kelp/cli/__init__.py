"""The `kelp` command: a few lines around each stage's function.

``shared`` holds the app, its option types and the one error handler; ``data``, ``stages``,
``pipeline`` and ``tune`` add their commands to it; ``tables`` is what they print.
"""

import typer

from kelp import __version__
from kelp._progress import set_quiet
from kelp.cli import data, pipeline, stages, tune  # noqa: F401  (they register their commands)
from kelp.cli.shared import app

__all__ = ["app"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kelp {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Segment kelp canopy in multispectral tiles: trees + U-Net, stacked."""
    set_quiet(quiet)
