"""``hpcprof`` command line: list, backends, run, report.

Only this module prints or exits. Library errors become one-line messages with exit
status 2 (bad input) or 1 (a run that could not be done).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hpcprof.apps import APPS
from hpcprof.backends import AUTO, BACKENDS, probe_all
from hpcprof.config import RunConfig, SizeScale
from hpcprof.errors import BackendError, HpcprofError, StoreError, SuiteError, UnknownNameError
from hpcprof.records import Precision

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


def _reported(func: F) -> F:
    """Turn library exceptions into one-line errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SuiteError, UnknownNameError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        except (BackendError, StoreError, HpcprofError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Measure how much FP64 and FP32 arithmetic HPC proxy apps and training kernels execute."""


@main.command("list")
def list_apps() -> None:
    """List the built-in apps with their sizes."""
    width = max(len(n) for n in APPS)
    for name, info in APPS.items():
        click.echo(
            f"{name:<{width}}  {info.kind.value:<6} default={info.default_size:<9} "
            f"small={info.small_size:<7} {info.summary}  [size: {info.size_doc}]"
        )


@main.command("backends")
def list_backends() -> None:
    """Show which counter backends work on this machine, and why the others do not."""
    from hpcprof.host import collect_host

    for info, avail in probe_all(collect_host()):
        mark = "yes" if avail.ok else "no "
        click.echo(f"{info.name:<10} {mark}  {avail.detail}")


def _parse_sizes(values: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    sizes = []
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not raw.isdigit():
            raise click.BadParameter(
                f"{item!r}: expected APP=N, e.g. gemm=256", param_hint="--size"
            )
        sizes.append((name, int(raw)))
    return tuple(sizes)


def _parse_cpus(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    cpus: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected a list like 0-3,8", param_hint="--cpus"
        ) from None
    return tuple(cpus)


def _progress(done: int, total: int, label: str) -> None:
    click.echo(f"[{done}/{total}] {label}", err=True)


@main.command("run")
@click.option("--app", "apps", multiple=True, help="Built-in app (repeatable; default: all).")
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(["float64", "float32"]),
    help="Precision (repeatable; default: both).",
)
@click.option(
    "--sizes",
    "scale",
    type=click.Choice([s.value for s in SizeScale]),
    default="default",
    show_default=True,
)
@click.option("--size", "size_overrides", multiple=True, metavar="APP=N", help="Size for one app.")
@click.option(
    "--backend",
    type=click.Choice([AUTO, *BACKENDS.names()]),
    default=AUTO,
    show_default=True,
)
@click.option("--repetitions", "-r", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
)
@click.option("--cpus", default=None, help="Pin runs to these CPUs, e.g. 0-3.")
@click.option(
    "--suite", type=click.Path(dir_okay=False), default=None, help="External suite file (TOML)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="results/hpcprof",
    show_default=True,
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@_reported
def run(
    apps: tuple[str, ...],
    precisions: tuple[str, ...],
    scale: str,
    size_overrides: tuple[str, ...],
    backend: str,
    repetitions: int,
    warmup: int,
    timeout_s: float,
    cpus: str | None,
    suite: str | None,
    out_dir: str,
    quiet: bool,
) -> None:
    """Run apps under a backend and store the results under OUT/<run-id>/."""
    from hpcprof.study import run_study

    for name in apps:
        APPS[name]  # unknown names fail before anything runs
    config = RunConfig(
        apps=apps,
        precisions=tuple(Precision(p) for p in precisions)
        or (Precision.FLOAT64, Precision.FLOAT32),
        scale=SizeScale(scale),
        sizes=_parse_sizes(size_overrides),
        backend=backend,
        repetitions=repetitions,
        warmup=warmup,
        timeout_s=timeout_s,
        cpus=_parse_cpus(cpus),
        suite=suite,
        out_dir=out_dir,
    )
    directory = run_study(config, progress=None if quiet else _progress)
    click.echo(str(directory))


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--png/--no-png", default=True, show_default=True, help="Also write fp64_share.png.")
@_reported
def report(run_dir: Path, png: bool) -> None:
    """Print a markdown summary of RUN_DIR; write report.md and fp64_share.png into it."""
    from hpcprof.report import markdown, plot_fp64_share, summarize
    from hpcprof.store import read_run, write_text

    frame, config = read_run(run_dir)
    rows = summarize(frame)
    text = f"# hpcprof run {config.get('run_id', run_dir.name)} (backend {config.get('backend_used')})\n\n"
    text += markdown(rows)
    write_text(run_dir / "report.md", text)
    if png:
        plot_fp64_share(rows, run_dir / "fp64_share.png")
    click.echo(text, nl=False)


if __name__ == "__main__":
    sys.exit(main())
