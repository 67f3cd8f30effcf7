"""Config files (TOML) fill the typed stage configs; every mistake names its key.

A file may hold a stage's keys at the top level or under the stage's table, e.g.::

    [features]
    indices = ["NDVI", "NDWI"]
    [features.filters]
    sigmas = [1, 2]
"""

import os
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kelp.errors import ConfigError

__all__ = ["load_config", "validate_config"]

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Base of every config model: unknown keys are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_config(model: type[M], values: dict[str, Any], where: str = "config") -> M:
    """Build ``model`` from ``values``, turning pydantic's errors into one readable message.

    Raises:
        ConfigError: listing each bad key with what it accepts.
    """
    try:
        return model.model_validate(values)
    except ValidationError as error:
        lines = []
        for e in error.errors():
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                parent = _model_at(model, e["loc"][:-1])
                valid = ", ".join(parent.model_fields) if parent else "see the README"
                lines.append(f"{where}: unknown key {key!r}; valid keys: {valid}")
            else:
                lines.append(f"{where}: {key}: {e['msg']} (got {e.get('input')!r})")
        raise ConfigError("\n".join(lines)) from None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        # ``X | None`` and other unions: the model among the alternatives
        candidates = typing.get_args(annotation) or (annotation,)
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not models:
            return None
        model = models[0]
    return model


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tables of a TOML config file.

    Raises:
        ConfigError: no such file, or not valid TOML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def load_config(path: str | os.PathLike[str], model: type[M], section: str) -> M:
    """Read a TOML file into ``model``, from table ``[section]`` if present, else the top.

    Raises:
        ConfigError: no such file, unreadable TOML, or bad keys/values (named).
    """
    data = load_toml(path)
    values = data.get(section, data)
    return validate_config(model, values, where=f"{path} [{section}]")
