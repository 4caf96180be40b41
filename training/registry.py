"""A name -> frozen Info record registry shared by datasets, models and optimizers.

Variants are registered as separate records (presets), never as copied classes; registering a
name twice is an error so that one spelling always means one thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class _Named(Protocol):
    @property
    def name(self) -> str: ...


InfoT = TypeVar("InfoT", bound=_Named)


class DuplicateNameError(ValueError):
    """A name was registered twice."""


class UnknownNameError(ValueError):
    """A name is not in the registry."""


class Registry(Generic[InfoT]):
    """Ordered mapping from name to Info record.

    Args:
        kind: what the records describe ("dataset", "model", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._items: dict[str, InfoT] = {}

    def register(self, info: InfoT) -> InfoT:
        """Add ``info`` under ``info.name``.

        Args:
            info: the record to add.

        Returns:
            ``info`` unchanged, so that a module can write ``X = registry.register(Info(...))``.

        Raises:
            DuplicateNameError: if the name is already registered.
            ValueError: if the name is empty or not lower case.
        """
        name = info.name
        if not name or name != name.strip().lower():
            raise ValueError(f"{self._kind} name {name!r}: must be non-empty lower case")
        if name in self._items:
            raise DuplicateNameError(f"{self._kind} {name!r} is already registered")
        self._items[name] = info
        return info

    def get(self, name: str) -> InfoT:
        """Return the record called ``name``.

        Raises:
            UnknownNameError: listing the registered names, if ``name`` is unknown.
        """
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self._kind} {name!r}; choose from {', '.join(self._items)}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[InfoT]:
        return iter(tuple(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)
