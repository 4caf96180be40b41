"""``prec-study`` command line: click parses, builds a frozen config, calls one function."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from precision.common.registry import UnknownNameError
from precision.formats import BlockFormat, FloatFormat, Format
from precision.registry import aliases_of, formats, from_bits
from precision.registry import parse as parse_format
from training.cli_bits import bits_needed_cmd, report_bits
from training.cli_options import (
    StudyUsageError,
    comma_list,
    executor_options,
    registry_names,
    shared_config,
    shared_options,
    slurm_settings,
)
from training.config import DEFAULT_LRS, ArmSpec, ConfigError, RunConfig
from training.data import DatasetError
from training.distributed import WorkerError, is_primary_process
from training.executor import ExecutorError, SlurmExecutor, SlurmSettings
from training.loop import run_study
from training.optim import OPTIMIZERS
from training.progress import format_number, print_table, show_progress
from training.records import RecordError
from training.report import table_rows, write_report
from training.sweep import (
    SWEEP_FILE,
    ApsModes,
    SweepSpec,
    run_sweep,
    run_sweep_jobs,
    sweep_dir,
    three_arms,
    write_sweep_report,
)

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prec-study")
def main() -> None:
    """How much floating-point precision does training really need? Measure it."""


@main.command("formats")
@click.option(
    "--bits", "show_bits", is_flag=True, help="Also show what --bits N means for N=3..32."
)
def formats_cmd(show_bits: bool) -> None:
    """List the named formats with their range and precision."""
    rows: list[tuple[str, ...]] = [
        ("name", "bits", "e", "m", "max finite", "min normal", "min subnormal", "eps", "aliases")
    ]
    rows += [_format_row(f) for f in formats()]
    print_table(rows)
    if show_bits:
        click.echo("")
        rows = [("--bits", "format", "e", "m", "max finite", "eps")]
        for n in range(3, 33):
            f = from_bits(n)
            rows.append(
                (str(n), str(f), str(f.exponent_bits), str(f.mantissa_bits),
                 format_number(f.max_finite), format_number(f.epsilon))
            )  # fmt: skip
        print_table(rows)


def _format_row(f: Format) -> tuple[str, ...]:
    """One line of ``prec-study formats``: bits, e, m, range, eps and aliases or layout."""
    if isinstance(f, FloatFormat):
        return (str(f), str(f.total_bits), str(f.exponent_bits), str(f.mantissa_bits),
                format_number(f.max_finite), format_number(f.smallest_normal),
                format_number(f.smallest_subnormal), format_number(f.epsilon),
                ", ".join(aliases_of(str(f))))  # fmt: skip
    if isinstance(f, BlockFormat):
        el = f.element
        el_max = el.max_finite if isinstance(el, FloatFormat) else el.max_value
        return (str(f), f"{f.total_bits:g}", "-", "-", f"{format_number(el_max)} x scale",
                "-", "-", "-", f"block {f.block_size}, element {el}, scale {f.scale}")  # fmt: skip
    return (str(f), str(f.word_bits), "-", "-", format_number(f.max_value), "-", "-",
            format_number(f.resolution), "")  # fmt: skip


def _execute(run: Callable[[], T], run_dir: Path) -> T:
    """Call the library; turn its failures into one-line messages."""
    try:
        return run()
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted; completed epochs are saved in {run_dir} "
            f"(continue with --resume {run_dir})",
            err=True,
        )
        raise SystemExit(130) from None
    except WorkerError as exc:
        raise click.ClickException(
            f"{exc}; completed epochs are saved in {run_dir} (continue with --resume {run_dir})"
        ) from None
    except (ConfigError, DatasetError, RecordError, UnknownNameError) as exc:
        raise StudyUsageError(str(exc)) from None
    except ValueError as exc:  # e.g. device=cuda without a GPU, nccl on the CPU
        raise StudyUsageError(str(exc)) from None


@main.command("run")
@click.option(
    "--bits", type=int, default=None, help="Communication width: 4 is e3m0, 8 is e5m2 [default: 4]."
)
@click.option(
    "--format", "fmt_name", default=None, help="Communication format by name (e.g. e4m3, e3m0)."
)
@click.option(
    "--aps/--no-aps",
    default=None,
    help="Only this low-precision arm (plus float32); default: both arms.",
)
@click.option(
    "--arms",
    "arm_kinds",
    default=None,
    callback=comma_list(str),
    help="Comma list of float32, plain, aps [default: all three].",
)
@click.option(
    "--optimizer", type=click.Choice(registry_names(OPTIMIZERS)), default="sgd", show_default=True
)
@click.option(
    "--batch-size",
    type=int,
    default=64,
    show_default=True,
    help="Global batch size (all workers together).",
)
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Base learning rate at --base-batch-size [default: per optimizer, 0.1 for sgd].",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Continue the run in RUN_DIR with its saved settings.",
)
@click.option(
    "--stop-after-epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Train each arm at most N more epochs now (continue later with --resume).",
)
@shared_options
@click.pass_context
def run_cmd(ctx: click.Context, **opts: Any) -> None:
    """Train float32 vs low-precision gradient communication, without and with APS.

    With no options: an MLP on the bundled digits data, 2 workers, 4-bit (e3m0) gradients.
    Writes config.json, metrics.csv, summary.md/csv and accuracy.png under
    OUTPUT_DIR/<run-id>/.
    """
    if opts["resume_dir"] is not None:
        explicit = [
            p.name for p in ctx.command.params
            if p.name not in ("resume_dir", "stop_after_epochs")
            and ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE
        ]  # fmt: skip
        if explicit:
            raise click.UsageError(
                f"--resume uses the settings saved in the run directory; drop --{explicit[0].replace('_', '-')}"
            )
        run_dir = opts["resume_dir"]
        try:
            cfg = RunConfig.load(run_dir / "config.json")
        except ConfigError as exc:
            raise StudyUsageError(str(exc)) from None
    else:
        cfg = shared_config(_run_arms(opts), opts)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.digest()[:6]}"
        run_dir = opts["output_dir"] / run_id
    if is_primary_process():
        click.echo(
            f"run {run_dir.name}: {len(cfg.arms)} arms, {cfg.model} on {cfg.dataset}", err=True
        )
    start = time.perf_counter()
    _execute(
        lambda: run_study(
            cfg, run_dir, stop_after_epochs=opts["stop_after_epochs"], on_event=show_progress
        ),
        run_dir,
    )
    if not is_primary_process():
        return
    summary = _execute(lambda: write_report(run_dir), run_dir)
    print_table(table_rows(summary))
    click.echo(f"\nwall time {time.perf_counter() - start:.1f} s; results in {run_dir}")


def _run_arms(opts: dict[str, Any]) -> tuple[ArmSpec, ...]:
    if opts["bits"] is not None and opts["fmt_name"] is not None:
        raise click.UsageError("give --bits or --format, not both")
    try:
        if opts["fmt_name"] is not None:
            fmt = parse_format(opts["fmt_name"])
        else:
            fmt = from_bits(4 if opts["bits"] is None else opts["bits"])
    except ValueError as exc:
        name = "--format" if opts["fmt_name"] is not None else "--bits"
        raise click.BadParameter(str(exc), param_hint=name) from None
    which: tuple[str, ...] = ("float32", "plain", "aps")
    if opts["arm_kinds"] is not None:
        if opts["aps"] is not None:
            raise click.UsageError("give --arms or --aps/--no-aps, not both")
        which = opts["arm_kinds"]
    elif opts["aps"] is not None:
        which = ("float32", "aps" if opts["aps"] else "plain")
    lr = opts["lr"] if opts["lr"] is not None else DEFAULT_LRS.get(opts["optimizer"], (0.1,))[-1]
    try:
        return three_arms(
            fmt,
            batch_size=opts["batch_size"],
            optimizer=opts["optimizer"],
            lr=lr,
            seed=opts["seed"],
            which=which,
        )
    except ValueError as exc:
        raise StudyUsageError(str(exc)) from None


@main.command("sweep")
@click.option(
    "--bits",
    "bits_list",
    default="4,8,32",
    show_default=True,
    callback=comma_list(int),
    help="Comma list of widths; 32 is the float32 baseline.",
)
@click.option(
    "--aps",
    "aps_modes",
    type=click.Choice([m.value for m in ApsModes]),
    default="both",
    show_default=True,
)
@click.option("--batch-sizes", default="64,256", show_default=True, callback=comma_list(int))
@click.option("--optimizers", default="sgd", show_default=True, callback=comma_list(str))
@click.option(
    "--lrs",
    default=None,
    callback=comma_list(float),
    help="Base learning rates for every optimizer [default: 2 per optimizer].",
)
@click.option("--seeds", default="0", show_default=True, callback=comma_list(int))
@click.option(
    "--target-accuracy",
    type=click.FloatRange(min=0, max=100, min_open=True),  # percent here; a fraction below
    default=None,
    help="Test accuracy (percent) whose steps-to-target the batch-size study reports.",
)
@click.option("--limit-tolerance", type=float, default=1.0, show_default=True,
              help="Accuracy loss (points) against the smallest batch that marks the batch-size limit.")  # fmt: skip
@shared_options
@executor_options
def sweep_cmd(**opts: Any) -> None:
    """Grid of bits x APS x batch size x optimizer x learning rate x seed (resumable).

    Rerunning the same command continues it: finished cells are skipped.
    """
    for opt in opts["optimizers"]:
        if opt not in OPTIMIZERS:
            raise click.BadParameter(
                f"unknown optimizer {opt!r}; choose from {', '.join(registry_names(OPTIMIZERS))}",
                param_hint="--optimizers",
            )
    lrs = {} if opts["lrs"] is None else {o: opts["lrs"] for o in opts["optimizers"]}
    target = opts["target_accuracy"]
    try:
        spec = SweepSpec(
            bits=opts["bits_list"], aps=ApsModes(opts["aps_modes"]), batch_sizes=opts["batch_sizes"],
            optimizers=opts["optimizers"], lrs=lrs, seeds=opts["seeds"],
            target_accuracy=None if target is None else target / 100,
            limit_tolerance=opts["limit_tolerance"],
        )  # fmt: skip
        arms = spec.arms()
    except ValueError as exc:
        raise StudyUsageError(str(exc)) from None
    shared = shared_config(arms, opts)  # checks every cell (e.g. batch divisible by workers)
    root = sweep_dir(opts["output_dir"], shared)
    click.echo(f"sweep {root.name}: {len(spec.arms())} cells, {shared.workers} workers", err=True)
    slurm = slurm_settings(opts, root / "slurm")
    if slurm is not None:
        _sweep_on_slurm(spec, shared, opts, slurm)
        return
    root, results = _execute(
        lambda: run_sweep(spec, shared, opts["output_dir"], on_event=show_progress), root
    )
    if not is_primary_process():
        return
    print_table(table_rows(results))
    if (root / "scaling.md").exists():
        click.echo(f"\nbatch-size scaling and limits: {root / 'scaling.md'}")
    click.echo(f"\nresults in {root}")


def _sweep_on_slurm(
    spec: SweepSpec, shared: RunConfig, opts: dict[str, Any], slurm: SlurmSettings
) -> None:
    """``sweep --executor slurm``: every cell one task of a job array."""
    executor = SlurmExecutor(
        slurm, on_done=lambda n, total: click.echo(f"{n}/{total} cells done", err=True)
    )
    root = sweep_dir(opts["output_dir"], shared)
    try:
        root, results, failed = _execute(
            lambda: run_sweep_jobs(spec, shared, opts["output_dir"], executor), root
        )
    except ExecutorError as exc:
        raise click.ClickException(str(exc)) from None
    print_table(table_rows(results))
    for name, error in failed.items():
        click.echo(f"failed: {name}: {error}", err=True)
    click.echo(f"\nresults in {root} (jobs {', '.join(executor.job_ids)})")


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_cmd(run_dir: Path) -> None:
    """Rebuild tables and plots of RUN_DIR from its saved records."""
    if (run_dir / "search.json").exists():
        report_bits(run_dir)
        return
    if (run_dir / SWEEP_FILE).exists():
        summary = _execute(lambda: write_sweep_report(run_dir), run_dir)
    else:
        summary = _execute(lambda: write_report(run_dir), run_dir)
    print_table(table_rows(summary))
    click.echo(f"\ntables and plots rewritten in {run_dir}")


main.add_command(bits_needed_cmd)

if __name__ == "__main__":
    main()
