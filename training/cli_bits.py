"""``prec-study bits-needed``: the fewest bits each tensor role of training needs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from precision.common.files import atomic_write_text
from precision.common.registry import UnknownNameError
from precision.rounding import RoundingMode
from training.bits_points import PointCache
from training.bits_report import answer_lines, rebuild_search, write_search_report
from training.bits_search import PointEvent, SearchError, SearchResult, SearchSpec, search_bits
from training.bits_train import TrainingEvaluator, arm_template, search_dir
from training.cli_options import (
    StudyUsageError,
    comma_list,
    executor_options,
    registry_names,
    shared_config,
    slurm_settings,
    training_options,
)
from training.config import DEFAULT_LRS, ConfigError, RunConfig
from training.data import DatasetError
from training.distributed import WorkerError, under_torchrun
from training.executor import ExecutorError, LocalExecutor, SlurmExecutor
from training.optim import OPTIMIZERS
from training.records import RecordError
from training.roles import Role
from training.sweep import ApsModes


def _bar(event: PointEvent) -> None:
    width = 24
    filled = min(width, width * event.done // max(event.planned, 1))
    r = event.result
    acc = "-" if r.accuracy is None else f"{100 * r.accuracy:5.1f}%"
    settings = ", ".join(s.label for s in event.point.settings) or "float32"
    click.echo(
        f"[{'#' * filled}{'.' * (width - filled)}] {event.done}/<={event.planned} "
        f"{settings} seed {event.point.seed}: {acc} {r.status.value}"
        + (" (cached)" if event.cached else ""),
        err=True,
    )


@click.command("bits-needed")
@click.option(
    "--roles",
    default=",".join(r.value for r in Role),
    show_default=True,
    callback=comma_list(Role.parse),
    help="Comma list of tensor roles to search.",
)
@click.option("--tolerance", type=float, default=0.5, show_default=True,
              help="Allowed drop of final test accuracy against float32, in points.")  # fmt: skip
@click.option("--seeds", default="0", show_default=True, callback=comma_list(int),
              help="Comma list of seeds; the worst seed decides.")  # fmt: skip
@click.option("--rounding", "roundings", default="nearest", show_default=True,
              callback=comma_list(RoundingMode.parse),
              help="Comma list of rounding modes searched (e.g. nearest,stochastic).")  # fmt: skip
@click.option("--aps", "aps_modes", type=click.Choice([m.value for m in ApsModes]),
              default="both", show_default=True, help="APS settings tried for grad-comm.")  # fmt: skip
@click.option("--max-exponent", type=int, default=8, show_default=True)
@click.option("--min-exponent", type=int, default=2, show_default=True)
@click.option("--max-mantissa", type=int, default=10, show_default=True)
@click.option(
    "--optimizer", type=click.Choice(registry_names(OPTIMIZERS)), default="sgd", show_default=True
)
@click.option("--batch-size", type=int, default=64, show_default=True,
              help="Global batch size (all workers together).")  # fmt: skip
@click.option("--lr", type=float, default=None,
              help="Base learning rate at --base-batch-size [default: per optimizer].")  # fmt: skip
@training_options
@executor_options
def bits_needed_cmd(**opts: Any) -> None:
    """Search the fewest exponent and mantissa bits each tensor role needs.

    Each role (with the others in float32) keeps the final test accuracy within
    --tolerance points of float32 with the same seed; the answers are then trained
    together. Results go to OUTPUT_DIR/bits-<hash>/: points.csv, summary.md and a heatmap
    per role. Rerunning the same command reuses every point already trained.
    """
    if under_torchrun():
        raise click.UsageError(
            "bits-needed starts each point's workers itself (--workers); run it without torchrun"
        )
    lr = opts["lr"] if opts["lr"] is not None else DEFAULT_LRS.get(opts["optimizer"], (0.1,))[-1]
    try:
        spec = SearchSpec(
            roles=opts["roles"], seeds=opts["seeds"], tolerance=opts["tolerance"],
            roundings=opts["roundings"], aps=ApsModes(opts["aps_modes"]).values,
            max_exponent=opts["max_exponent"], min_exponent=opts["min_exponent"],
            max_mantissa=opts["max_mantissa"],
        )  # fmt: skip
        template = arm_template(opts["batch_size"], opts["optimizer"], lr)
    except (SearchError, ConfigError) as exc:
        raise StudyUsageError(str(exc)) from None
    shared = shared_config((template,), {**opts, "rounding": RoundingMode.NEAREST_EVEN})
    root = search_dir(opts["output_dir"], shared)
    slurm = slurm_settings(opts, root / "slurm")
    executor = LocalExecutor() if slurm is None else SlurmExecutor(slurm)
    evaluator = TrainingEvaluator(shared, root, executor)
    click.echo(
        f"bits-needed {root.name}: {', '.join(r.value for r in spec.roles)} on "
        f"{shared.model}/{shared.dataset}, at most {spec.planned_points()} points",
        err=True,
    )
    start = time.perf_counter()
    # Locally each point is cached as soon as it is trained; on Slurm the seeds of a setting
    # go out together as one job array.
    result = _search(spec, shared, root, evaluator, together=slurm is not None)
    for line in answer_lines(spec, result):
        click.echo(line)
    click.echo(f"\nwall time {time.perf_counter() - start:.1f} s; results in {root}")


def _search(
    spec: SearchSpec, shared: RunConfig, root: Path, evaluator: TrainingEvaluator, *, together: bool
) -> SearchResult:
    """Save the settings in ``root``, search, write the report; failures as CLI errors."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        shared.save(root / "config.json")
        atomic_write_text(root / "search.json", json.dumps(spec.to_dict(), indent=2) + "\n")
        many = evaluator.many if together else None
        result = search_bits(
            spec, evaluator, cache=PointCache(root), evaluate_many=many, on_point=_bar
        )
        write_search_report(root, _title(shared), spec, result)
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted; trained points are kept in {root} (rerun to continue)", err=True
        )
        sys.exit(130)
    except (WorkerError, ExecutorError) as exc:
        raise click.ClickException(
            f"{exc}; trained points are kept in {root} (rerun to continue)"
        ) from None
    except (SearchError, ConfigError, DatasetError, RecordError, UnknownNameError) as exc:
        raise StudyUsageError(str(exc)) from None
    except ValueError as exc:  # e.g. device=cuda without a GPU
        raise StudyUsageError(str(exc)) from None
    return result


def _title(cfg: RunConfig) -> str:
    return f"bits needed: {cfg.model} on {cfg.dataset}, {cfg.epochs} epochs, {cfg.workers} workers"


def report_bits(root: Path) -> None:
    """``prec-study report`` on a bits-needed directory: rebuild its files from the cache."""
    try:
        spec, result = rebuild_search(root)
        write_search_report(root, _title(RunConfig.load(root / "config.json")), spec, result)
    except (SearchError, ConfigError, RecordError) as exc:
        raise StudyUsageError(str(exc)) from None
    for line in answer_lines(spec, result):
        click.echo(line)
    click.echo(f"\ntables and plots rewritten in {root}")
