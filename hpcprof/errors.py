"""Exceptions raised by hpcprof; the CLI turns them into one-line messages."""

from __future__ import annotations

from precision.common.registry import UnknownNameError as _UnknownName


class HpcprofError(Exception):
    """Base class of every error hpcprof raises on purpose."""


class SuiteError(HpcprofError):
    """A suite file is malformed; the message names the file, the key and what is allowed."""


class UnknownNameError(HpcprofError, _UnknownName):
    """An app, machine, backend or emulation name is not in its registry."""


class BuildError(HpcprofError):
    """A C program could not be compiled."""


class BackendError(HpcprofError):
    """A counter backend cannot run, or its output could not be read."""


class ParseError(BackendError):
    """Tool output did not have the expected layout."""


class StoreError(HpcprofError):
    """A run directory is missing or unreadable."""


class MachineFileError(HpcprofError):
    """A machines file is malformed; the message names the file, the key and what is allowed."""


class LaunchError(HpcprofError):
    """A launcher or a cluster submission cannot be used here (missing tool or package)."""
