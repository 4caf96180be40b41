"""Reading TOML settings files with one-line errors that name the file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def load_toml(
    path: str | os.PathLike[str],
    *,
    what: str,
    error: type[Exception] = ValueError,
    allowed: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Read and parse the TOML file at ``path``.

    Args:
        path: the file.
        what: what the file is, for messages ("machines file").
        error: the exception class raised (a package's own, e.g. ``SuiteError``).
        allowed: the top-level keys the file may have (None: any).

    Returns:
        The decoded top-level table.

    Raises:
        error: the file cannot be read, is not valid TOML, or has a top-level key not in
            ``allowed``; the one-line message starts with the file name.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{p}: not valid TOML: {exc}") from None
    if allowed is not None:
        keys = tuple(allowed)
        extra = [k for k in data if k not in keys]
        if extra:
            raise error(f"{p}: unknown key {extra[0]!r} (allowed: {', '.join(keys)})")
    return data


def table_array(
    data: Mapping[str, Any], key: str, path: Path, *, error: type[Exception] = ValueError
) -> list[Any]:
    """The non-empty array of tables ``[[key]]`` of a decoded file.

    Raises:
        error: ``key`` is missing or not a non-empty array (items are checked by the caller).
    """
    raw = data.get(key)
    if not isinstance(raw, list) or not raw:
        raise error(f"{path}: key '{key}' must be a non-empty array of tables ([[{key}]])")
    return raw


def check_unique(
    names: Iterable[str], path: Path, what: str, *, error: type[Exception] = ValueError
) -> None:
    """Raise ``error`` naming the first name that appears twice ("app name 'x' appears twice").

    Raises:
        error: a name is repeated.
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise error(f"{path}: {what} name {name!r} appears twice; names must be unique")
        seen.add(name)
