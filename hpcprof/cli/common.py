"""Pieces every ``hpcprof`` command shares: one-line errors and library-error mapping."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hpcprof.errors import (
    BackendError,
    HpcprofError,
    LaunchError,
    MachineFileError,
    StoreError,
    SuiteError,
    UnknownNameError,
)
from precision.common.parse import parse_name_int

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(click.UsageError):
    """Bad input from the user: exit status 2."""


class OneLineErrors(click.Group):
    """Report every click error as one line on stderr (no usage block, no traceback)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            message = " ".join(exc.format_message().split())
            click.echo(f"Error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)


def reported(func: F) -> F:
    """Turn library exceptions into one-line errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SuiteError, MachineFileError, UnknownNameError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        except (BackendError, StoreError, LaunchError, HpcprofError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def name_int_pairs(
    values: tuple[str, ...], option: str, *, example: str, what: str = "APP"
) -> tuple[tuple[str, int], ...]:
    """Parse repeated ``APP=N`` option values, reporting a bad one as a usage error.

    Raises:
        click.BadParameter: a value is not ``NAME=N``.
    """
    try:
        return tuple(parse_name_int(v, what=what, example=example) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
