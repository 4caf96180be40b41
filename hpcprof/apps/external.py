"""External apps described by a suite file (TOML).

A suite file names commands the user has already built (ECP proxy apps, say). Commands are
argument lists and are never passed through a shell. Every malformed entry raises
:class:`~hpcprof.errors.SuiteError` with one line naming the file, the key and what is
allowed. Example: ``hpcprof/suites/ecp_proxies.toml``.

Layout::

    [suite]
    name = "ecp-proxies"
    mpi_launcher = ["mpirun", "-np"]      # ranks are appended

    [[app]]
    name = "xsbench"
    command = ["./XSBench", "-t", "4"]
    workdir = "~/src/XSBench/openmp-threading"
    env = { OMP_PROC_BIND = "true" }
    mpi_ranks = 1
    omp_threads = 4
    timeout_s = 600
    fom_regex = 'Lookups/s:\\s+([0-9,.]+)'
    fom_unit = "lookups/s"
    presets = { small = ["-s", "small"], large = ["-s", "large"] }
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcprof.errors import SuiteError
from precision.common.tomlfile import check_unique, load_toml, table_array

SUITE_KEYS = ("name", "description", "mpi_launcher")
APP_KEYS = (
    "name",
    "description",
    "command",
    "workdir",
    "env",
    "mpi_ranks",
    "omp_threads",
    "presets",
    "fom_regex",
    "fom_unit",
    "timeout_s",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True, kw_only=True)
class ExternalApp:
    """One app of a suite file; see the module docstring for the keys."""

    name: str
    command: tuple[str, ...]
    description: str = ""
    workdir: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    mpi_ranks: int = 1
    omp_threads: int | None = None
    presets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    fom_regex: str | None = None
    fom_unit: str = ""
    timeout_s: float | None = None

    def preset_names(self) -> tuple[str | None, ...]:
        """Presets to run: each named preset, or just the bare command (None)."""
        return tuple(name for name, _ in self.presets) or (None,)

    def preset_args(self, preset: str | None) -> tuple[str, ...]:
        """Extra arguments of ``preset`` (none for None)."""
        if preset is None:
            return ()
        for name, args in self.presets:
            if name == preset:
                return args
        raise SuiteError(f"app {self.name}: no preset {preset!r}")


@dataclass(frozen=True, kw_only=True)
class Suite:
    """A parsed suite file."""

    path: Path
    name: str
    apps: tuple[ExternalApp, ...]
    description: str = ""
    mpi_launcher: tuple[str, ...] = ("mpirun", "-np")

    def command(self, app: ExternalApp, preset: str | None) -> list[str]:
        """Argument list for one run: MPI launcher (if ranks > 1), command, preset args."""
        cmd = [*app.command, *app.preset_args(preset)]
        if app.mpi_ranks > 1:
            cmd = [*self.mpi_launcher, str(app.mpi_ranks), *cmd]
        return cmd

    def environment(self, app: ExternalApp) -> dict[str, str]:
        """Variables to add to the inherited environment for ``app``."""
        env = dict(app.env)
        if app.omp_threads is not None:
            env.setdefault("OMP_NUM_THREADS", str(app.omp_threads))
        return env


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate a suite file.

    Raises:
        SuiteError: unreadable file, TOML syntax error, or a key with a bad value.
    """
    p = Path(path)
    return parse_suite(load_toml(p, what="suite file", error=SuiteError), p)


def parse_suite(data: Mapping[str, Any], path: Path) -> Suite:
    """Validate the decoded TOML ``data`` of the suite file at ``path``."""
    _only(data, ("suite", "app"), path, "top level")
    head = data.get("suite", {})
    if not isinstance(head, Mapping):
        raise SuiteError(f"{path}: key 'suite' must be a table")
    _only(head, SUITE_KEYS, path, "[suite]")
    raw_apps = table_array(data, "app", path, error=SuiteError)
    apps = tuple(_parse_app(raw, i, path) for i, raw in enumerate(raw_apps))
    check_unique((a.name for a in apps), path, "app", error=SuiteError)
    launcher = head.get("mpi_launcher", ["mpirun", "-np"])
    return Suite(
        path=path,
        name=_str(head.get("name", path.stem), path, "suite.name"),
        description=_str(head.get("description", ""), path, "suite.description"),
        mpi_launcher=_str_list(launcher, path, "suite.mpi_launcher"),
        apps=apps,
    )


def _parse_app(raw: object, index: int, path: Path) -> ExternalApp:
    where = f"app[{index}]"
    if not isinstance(raw, Mapping):
        raise SuiteError(f"{path}: {where} must be a table")
    if "name" not in raw:
        raise SuiteError(f"{path}: {where}.name is required (a name like 'xsbench')")
    name = _str(raw["name"], path, f"{where}.name")
    if not _NAME.match(name):
        raise SuiteError(f"{path}: {where}.name={name!r}: use letters, digits, '_', '.', '+', '-'")
    where = f"app '{name}'"
    _only(raw, APP_KEYS, path, where)
    if "command" not in raw:
        raise SuiteError(f"{path}: {where}: key 'command' is required (a list of strings)")
    workdir = raw.get("workdir")
    fom = raw.get("fom_regex")
    if fom is not None:
        fom = _str(fom, path, f"{where}.fom_regex")
        try:
            groups = re.compile(fom).groups
        except re.error as exc:
            raise SuiteError(f"{path}: {where}: key 'fom_regex' is not a regex: {exc}") from exc
        if groups < 1:
            raise SuiteError(f"{path}: {where}: key 'fom_regex' needs one capture group")
    env = raw.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in env.values()
    ):
        raise SuiteError(f"{path}: {where}: key 'env' must be a table of strings or numbers")
    presets = raw.get("presets", {})
    if not isinstance(presets, Mapping):
        raise SuiteError(f"{path}: {where}: key 'presets' must be a table of string lists")
    timeout = raw.get("timeout_s")
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise SuiteError(f"{path}: {where}: key 'timeout_s' must be a positive number")
    return ExternalApp(
        name=name,
        description=_str(raw.get("description", ""), path, f"{where}.description"),
        command=_str_list(raw["command"], path, f"{where}.command"),
        workdir=None
        if workdir is None
        else Path(os.path.expanduser(_str(workdir, path, f"{where}.workdir"))),
        env=tuple((str(k), str(v)) for k, v in env.items()),
        mpi_ranks=_positive_int(raw.get("mpi_ranks", 1), path, f"{where}.mpi_ranks"),
        omp_threads=None
        if raw.get("omp_threads") is None
        else _positive_int(raw["omp_threads"], path, f"{where}.omp_threads"),
        presets=tuple(
            (str(k), _str_list(v, path, f"{where}.presets.{k}", allow_empty=True))
            for k, v in presets.items()
        ),
        fom_regex=fom,
        fom_unit=_str(raw.get("fom_unit", ""), path, f"{where}.fom_unit"),
        timeout_s=None if timeout is None else float(timeout),
    )


def _only(table: Mapping[str, Any], allowed: tuple[str, ...], path: Path, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise SuiteError(
                f"{path}: {where}: key {key!r} is not allowed (allowed: {', '.join(allowed)})"
            )


def _str(value: object, path: Path, key: str) -> str:
    if not isinstance(value, str):
        raise SuiteError(f"{path}: key '{key}' must be a string, got {type(value).__name__}")
    return value


def _str_list(value: object, path: Path, key: str, allow_empty: bool = False) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) for v in value)
        or (not allow_empty and not value)
    ):
        what = "a list of strings" if allow_empty else "a non-empty list of strings"
        raise SuiteError(f"{path}: key '{key}' must be {what} (no shell strings)")
    return tuple(value)


def _positive_int(value: object, path: Path, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SuiteError(f"{path}: key '{key}' must be an integer >= 1, got {value!r}")
    return value
