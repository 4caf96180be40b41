"""``hpcprof`` command line: list, backends, run, submit, report (compare and bits-needed
live in :mod:`hpcprof.cli.analysis`).

Only the CLI modules print or exit. Library errors become one-line messages with exit
status 2 (bad input) or 1 (a run that could not be done).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hpcprof.apps import APPS
from hpcprof.backends import AUTO, BACKENDS, probe_all
from hpcprof.cli.analysis import bits_needed, compare, machines
from hpcprof.cli.bound import bound
from hpcprof.cli.common import OneLineErrors, name_int_pairs, reported
from hpcprof.results.records import Precision
from hpcprof.run.config import RunConfig, SizeScale
from hpcprof.run.launchers import LauncherKind


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Measure how much FP64 and FP32 arithmetic HPC proxy apps and training kernels execute."""


@main.command("list")
def list_apps() -> None:
    """List the built-in apps with their sizes."""
    width = max(len(n) for n in APPS)
    for name, info in APPS.items():
        click.echo(
            f"{name:<{width}}  {info.runs_on:<10} default={info.default_size:<9} "
            f"small={info.small_size:<7} {info.summary}  [size: {info.size_doc}]"
        )


@main.command("backends")
def list_backends() -> None:
    """Show which counter backends work on this machine, and why the others do not."""
    from hpcprof.run.host import collect_host

    for info, avail in probe_all(collect_host()):
        mark = "yes" if avail.ok else "no "
        click.echo(f"{info.name:<10} {mark}  {avail.detail}")


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


def _run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``run`` and ``submit`` share."""
    options = [
        click.option("--app", "apps", multiple=True, help="Built-in app (repeatable; default: all CPU apps)."),
        click.option("--precision", "precisions", multiple=True,
                     type=click.Choice(["float64", "float32"]), help="Precision (repeatable; default: both)."),
        click.option("--sizes", "scale", type=click.Choice([s.value for s in SizeScale]),
                     default="default", show_default=True),
        click.option("--size", "size_overrides", multiple=True, metavar="APP=N", help="Size for one app."),
        click.option("--backend", type=click.Choice([AUTO, *BACKENDS.names()]), default=AUTO,
                     show_default=True),
        click.option("--repetitions", "-r", type=click.IntRange(min=1), default=3, show_default=True),
        click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
                     default=600.0, show_default=True),
        click.option("--cpus", default=None, help="Pin runs to these CPUs, e.g. 0-3."),
        click.option("--suite", type=click.Path(dir_okay=False), default=None,
                     help="External suite file (TOML)."),
        click.option("--launcher", type=click.Choice([k.value for k in LauncherKind]),
                     default="local", show_default=True, help="Start each run directly, under mpirun/srun, or as torch.distributed ranks."),
        click.option("--ranks", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Processes per run (mpirun/srun/torch.distributed)."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), default="results/hpcprof",
                     show_default=True),
        click.option("--quiet", "-q", is_flag=True, help="No progress on stderr."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _config(
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
    launcher: str,
    ranks: int,
    out_dir: str,
) -> RunConfig:
    for name in apps:
        APPS[name]  # unknown names fail before anything runs
    return RunConfig(
        apps=apps,
        precisions=tuple(Precision(p) for p in precisions)
        or (Precision.FLOAT64, Precision.FLOAT32),
        scale=SizeScale(scale),
        sizes=name_int_pairs(size_overrides, "--size", example="gemm=256"),
        backend=backend,
        repetitions=repetitions,
        warmup=warmup,
        timeout_s=timeout_s,
        cpus=_parse_cpus(cpus),
        suite=suite,
        out_dir=out_dir,
        launcher=LauncherKind(launcher),
        ranks=ranks,
    )


@main.command("run")
@_run_options
@reported
def run(quiet: bool, **options: Any) -> None:
    """Run apps under a backend and store the results under OUT/<run-id>/."""
    from hpcprof.run.study import run_study

    config = _config(**options)
    config.launch().check()
    directory = run_study(config, progress=None if quiet else _progress)
    click.echo(str(directory))


@main.command("submit")
@_run_options
@click.option("--partition", default=None, help="Slurm partition (default: the cluster's).")
@click.option("--time-min", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--cpus-per-task", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--array/--per-app", default=False, show_default=True,
              help="One job array, or one job per app.")  # fmt: skip
@reported
def submit(
    quiet: bool, partition: str | None, time_min: int, cpus_per_task: int, array: bool,
    **options: Any,
) -> None:  # fmt: skip
    """Run apps as Slurm jobs (submitit); gather all results into OUT/<run-id>/."""
    from hpcprof.run.slurm import SlurmConfig, submit_study

    config = _config(**options)
    slurm = SlurmConfig(
        partition=partition, time_min=time_min, cpus_per_task=cpus_per_task, array=array
    )
    directory = submit_study(config, slurm, progress=None if quiet else _progress)
    click.echo(str(directory))


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--png/--no-png", default=True, show_default=True, help="Also write fp64_share.png.")
@reported
def report(run_dir: Path, png: bool) -> None:
    """Print a markdown summary of RUN_DIR; write report.md and fp64_share.png into it."""
    from hpcprof.results.report import markdown, plot_fp64_share, summarize
    from hpcprof.results.store import read_run, write_text

    frame, config = read_run(run_dir)
    rows = summarize(frame)
    text = f"# hpcprof run {config.get('run_id', run_dir.name)} (backend {config.get('backend_used')})\n\n"
    text += markdown(rows)
    write_text(run_dir / "report.md", text)
    if png:
        plot_fp64_share(rows, run_dir / "fp64_share.png")
    click.echo(text, nl=False)


main.add_command(compare)
main.add_command(bits_needed)
main.add_command(machines)
main.add_command(bound)

if __name__ == "__main__":
    sys.exit(main())
