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
