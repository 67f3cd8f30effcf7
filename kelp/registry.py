"""Named things (tree models, spectral indices, losses, meta-models) in one kind of registry.

Every registry is a :class:`Registry`: names in registration order, a name registered twice
refused, and a miss raising the one "unknown X" error of :func:`kelp.errors.unknown_name`
(``unknown loss 'dice_bc'; did you mean 'dice_bce'? valid: ...``). :func:`one_of` gives a
pydantic field the same message for a name outside a registry or a ``Literal``.
"""

from collections.abc import Callable, Collection, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from kelp.errors import unknown_name

__all__ = ["Registry", "one_of"]

T = TypeVar("T")
_NO_VALUE: Any = object()


class Registry(Generic[T]):
    """Values of type ``T`` by name.

    Args:
        kind: what a name names, for the error message, e.g. ``"model"``, ``"loss"``.
        case_sensitive: ``False`` finds ``"ndvi"`` as ``"NDVI"`` (and refuses to register
            two names that differ only in case).
    """

    def __init__(self, kind: str, *, case_sensitive: bool = True) -> None:
        self.kind = kind
        self.case_sensitive = case_sensitive
        self._items: dict[str, T] = {}
        self._keys: dict[str, str] = {}  # lookup key -> registered name

    def _key(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, value: T) -> T: ...
    def register(self, name: str, value: Any = _NO_VALUE) -> Any:
        """Register ``value`` as ``name``; without a value, a decorator that does so.

        Returns:
            ``value``; or the decorator, which returns what it decorates unchanged.

        Raises:
            ValueError: ``name`` is registered already.
        """
        if value is _NO_VALUE:
            return lambda v: self.register(name, v)
        if self._key(name) in self._keys:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._keys[self._key(name)] = name
        self._items[name] = value
        return value

    def get(self, name: str) -> T:
        """The value of ``name``.

        Raises:
            ConfigError: no such name (the message suggests close ones and lists all).
        """
        if name not in self:
            raise unknown_name(self.kind, name, self._items)
        return self._items[self._keys[self._key(name)]]

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._items)

    def mapping(self) -> Mapping[str, T]:
        """A read-only, live view of the values by registered name."""
        return MappingProxyType(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def one_of(kind: str, valid: Collection[str]) -> BeforeValidator:
    """A pydantic validator refusing a string outside ``valid`` with the one message.

    Use as ``Annotated[str, one_of("model", MODELS)]`` or, keeping a ``Literal``'s static
    type, ``Annotated[Literal["a", "b"], one_of("loss", ("a", "b"))]``. Values that are not
    strings pass through to the type's own check.
    """

    def check(value: Any) -> Any:
        if isinstance(value, str) and value not in valid:
            message = str(unknown_name(kind, value, valid))
            raise PydanticCustomError("unknown_name", "{message}", {"message": message})
        return value

    return BeforeValidator(check)
