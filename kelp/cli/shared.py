"""What every `kelp` command shares: the app, its option types, one error handler.

Library functions raise :class:`~kelp.errors.KelpError` (or ``OSError`` for a file that
cannot be read, ``ImportError`` for a missing optional library) with a message that names
the file or value and what to do; :func:`errors` prints it as one red line and exits with
status 1. Anything else is a bug and keeps its traceback. Ctrl-C inside :func:`interrupt`
says how to resume and exits with 130.
"""

import contextlib
import enum
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args

import typer

from kelp._progress import console
from kelp.bands import DEFAULT_BAND_ORDER
from kelp.devices import Device
from kelp.errors import KelpError

if TYPE_CHECKING:  # pydantic costs `kelp --help` ~40 ms; only the stage bodies need it
    from pydantic import BaseModel

__all__ = [
    "BandOrderOption",
    "ClusterOption",
    "DeviceChoice",
    "OnErrorChoice",
    "app",
    "cluster_config",
    "data_app",
    "errors",
    "exit_if_tiles_missing",
    "interrupt",
    "parse_folds",
    "stage_config",
]

M = TypeVar("M", bound="BaseModel")

app = typer.Typer(
    name="kelp",
    help="Segment kelp canopy in multispectral tiles: trees + U-Net, stacked.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Datasets: synthesise, check, split into folds, pack masks.", no_args_is_help=True
)
app.add_typer(data_app, name="data", rich_help_panel="Data")

#: ``auto | cpu | cuda``, from the one vocabulary in :mod:`kelp.devices`.
DeviceChoice = enum.StrEnum("DeviceChoice", {d: d for d in get_args(Device)})  # type: ignore[misc]


class OnErrorChoice(enum.StrEnum):
    """What a stage does with a bad tile."""

    fail = "fail"
    skip = "skip"


BandOrderOption = Annotated[
    str, typer.Option("--band-order", help="The file's bands, first band first, comma-separated.")
]
DEFAULT_BAND_ORDER_TEXT = ",".join(DEFAULT_BAND_ORDER)
ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Run on Dask: local:N (N worker processes here) or a scheduler address like "
        "tcp://host:8786 (default: the config's [cluster], else this machine alone).",
    ),
]


def cluster_config(path: Path | None, address: str | None) -> Any:
    """The ``[cluster]`` table of the config file ``path`` (if any), ``--cluster`` on top.

    Raises:
        ConfigError: a bad address or key (named).
    """
    from kelp.cluster import ClusterConfig
    from kelp.config import load_toml, validate_config

    values = dict(load_toml(path).get("cluster", {})) if path is not None else {}
    if address is not None:
        values["address"] = address
    where = "--cluster" if address is not None else f"{path} [cluster]"
    return validate_config(ClusterConfig, values, where=where)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Print a user's error (a :class:`KelpError`, an unreadable file, a missing optional
    library) as one red line and exit with status 1, no traceback."""
    try:
        yield
    except (KelpError, OSError, ImportError) as error:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def interrupt() -> Iterator[None]:
    """Ctrl-C: one line saying how to resume, exit status 130, no traceback."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/yellow] finished work is kept; run the same command again "
            "to resume"
        )
        raise typer.Exit(130) from None


def exit_if_tiles_missing(manifest: dict[str, Any]) -> None:
    """Exit with status 1 when `kelp predict` left unreadable test tiles out of the
    submission (after everything else was written): a short ``submission.tar`` is never
    silent."""
    missing = manifest.get("skipped") or []
    if isinstance(missing, list) and missing:
        console.print(
            f"[red]error:[/red] {len(missing)} test tile(s) could not be read and are missing "
            f"from {manifest.get('submission')}; fix or replace them and rerun (the other "
            "masks are kept)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


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


def stage_config(model: type[M], section: str, path: Path | None, **options: Any) -> M:
    """A stage's config: table ``[section]`` of the TOML file ``path`` (defaults without
    one), then the command line's options on top (``None`` = not given; a dict updates a
    nested table, e.g. ``sampling={"seed": 1}``).

    Raises:
        ConfigError: a bad file, key or value (named).
    """
    from kelp.config import load_config, validate_config

    config = load_config(path, model, section) if path is not None else model()
    values = config.model_dump()
    given = False
    for key, value in options.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            values[key] = {**values[key], **value}
            given = given or bool(value)
        elif value is not None:
            values[key] = value
            given = True
    if not given:
        return config
    return validate_config(model, values, "command line")
