"""A generic, ordered name -> frozen Info record registry.

Used by training (datasets, models, optimizers) and hpcprof (apps, machines, backends,
emulations). Variants are registered as separate records (presets), never as copied classes;
registering a name twice is an error so that one spelling always means one thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

InfoT = TypeVar("InfoT")


class DuplicateNameError(ValueError):
    """A name was registered twice."""


class UnknownNameError(KeyError, ValueError):
    """A name is not in the registry.

    It is both a ``KeyError`` (a failed mapping look-up) and a ``ValueError`` (a bad value
    given by the user), so that callers catching either keep working.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _name_attribute(info: Any) -> str:
    return str(info.name)


class Registry(Mapping[str, InfoT]):
    """Ordered mapping from name to Info record; iterating yields the names.

    Args:
        kind: what the records describe ("dataset", "app", ...), used in error messages.
        infos: records to register at once, in order.
        key: the name of a record (default: its ``name`` attribute).
        error: the :class:`UnknownNameError` subclass :meth:`get` raises, so that a package
            can keep its own error hierarchy.
        lower_case: names must be non-empty lower case.
    """

    def __init__(
        self,
        kind: str,
        infos: Iterable[InfoT] = (),
        *,
        key: Callable[[InfoT], str] = _name_attribute,
        error: type[UnknownNameError] = UnknownNameError,
        lower_case: bool = False,
    ) -> None:
        self.kind = kind
        self._key = key
        self._error = error
        self._lower_case = lower_case
        self._items: dict[str, InfoT] = {}
        for info in infos:
            self.register(info)

    def register(self, info: InfoT) -> InfoT:
        """Add ``info`` under its name.

        Args:
            info: the record to add.

        Returns:
            ``info`` unchanged, so that a module can write ``X = registry.register(Info(...))``.

        Raises:
            DuplicateNameError: if the name is already registered.
            ValueError: if ``lower_case`` is set and the name is empty or not lower case.
        """
        name = self._key(info)
        if self._lower_case and (not name or name != name.strip().lower()):
            raise ValueError(f"{self.kind} name {name!r}: must be non-empty lower case")
        if name in self._items:
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered")
        self._items[name] = info
        return info

    def get(self, name: str) -> InfoT:  # type: ignore[override]
        """Return the record called ``name`` (unlike ``Mapping.get``, no default: a look-up
        either finds the name or says which names exist).

        Raises:
            UnknownNameError: listing the registered names, if ``name`` is unknown.
        """
        return self[name]

    def __getitem__(self, name: str) -> InfoT:
        try:
            return self._items[name]
        except KeyError:
            raise self._error(
                f"unknown {self.kind} {name!r}; choose from {', '.join(self._items)}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._items)

    def infos(self) -> tuple[InfoT, ...]:
        """Registered records in registration order."""
        return tuple(self._items.values())

    def merged(self, extra: Iterable[InfoT]) -> Registry[InfoT]:
        """A new registry holding these records followed by ``extra``.

        Raises:
            DuplicateNameError: a name of ``extra`` is already present (or repeated).
        """
        return Registry(
            self.kind,
            [*self._items.values(), *extra],
            key=self._key,
            error=self._error,
            lower_case=self._lower_case,
        )

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._items))

    def __len__(self) -> int:
        return len(self._items)
