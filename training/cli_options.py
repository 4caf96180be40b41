"""``prec-study``'s shared options: their click definitions and the config they build."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from precision.collectives import Reduction
from precision.common.registry import Registry
from precision.registry import parse as parse_format
from precision.rounding import RoundingMode
from training.config import ArmSpec, Backend, Device, RunConfig
from training.data import DATASETS
from training.executor import ExecutorKind, SlurmSettings
from training.models import MODELS, BatchNormMode
from training.optim.nlcg import BetaRule
from training.schedules import Decay

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class StudyUsageError(click.ClickException):
    """A setting the library rejected: a usage error (exit status 2), shown on one line."""

    exit_code = 2


def registry_names(registry: Registry[Any]) -> list[str]:
    return list(registry.names())


def comma_list(
    kind: Callable[[str], T],
) -> Callable[[click.Context, click.Parameter, str | None], tuple[T, ...] | None]:
    def convert(
        ctx: click.Context, param: click.Parameter, value: str | None
    ) -> tuple[T, ...] | None:
        if value is None:
            return None
        try:
            return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError as exc:
            raise click.BadParameter(f"{value!r}: {exc}") from None

    return convert


def _rounding(ctx: click.Context, param: click.Parameter, value: str) -> RoundingMode:
    try:
        return RoundingMode.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _stats_format(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    try:
        return None if value is None else parse_format(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def shared_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options common to ``run`` and ``sweep`` (everything an arm does not vary)."""
    for option in reversed(_shared_option_list()):
        f = option(f)
    return f


def training_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The shared options except ``--rounding`` (a command that varies it defines its own)."""
    for option in reversed(_shared_option_list(rounding=False)):
        f = option(f)
    return f


def _batch_control_options() -> list[Decorator]:
    """Batch-size control (Smith et al. 2018): the global batch grows at milestone epochs."""
    return [
        click.option("--batch-milestones", default=None, callback=comma_list(int),
                     help="Comma list of epochs at whose start the global batch grows by "
                          "--batch-factor; the LR follows by the scaling rule."),
        click.option("--batch-factor", type=int, default=2, show_default=True,
                     help="Growth of the global batch at each of --batch-milestones."),
        click.option("--max-batch-size", type=int, default=None,
                     help="Cap on the grown global batch [default: none]."),
    ]  # fmt: skip


def _shared_option_list(rounding: bool = True) -> Sequence[Decorator]:
    options: list[Decorator] = [
        click.option("--dataset", type=click.Choice(registry_names(DATASETS)), default="digits", show_default=True),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Local copy of a file-based dataset (mnist, cifar10, ...)."),
        click.option("--model", type=click.Choice(registry_names(MODELS)), default="mlp", show_default=True),
        click.option("--epochs", type=int, default=10, show_default=True),
        click.option("--workers", type=int, default=2, show_default=True,
                     help="Data-parallel processes (ignored under torchrun)."),
        *([click.option("--rounding", default="nearest", show_default=True, callback=_rounding,
                        help="Rounding of the communicated gradients (nearest, stochastic, ...).")]
          if rounding else []),
        click.option("--reduction", type=click.Choice([r.value for r in Reduction]), default="carrier", show_default=True,
                     help="carrier: quantize inputs and sum; rank/ring/torus: round every partial sum."),
        click.option("--headroom", type=int, default=None,
                     help="APS headroom bits [default: ceil(log2 workers)]."),
        click.option("--loss-scale", type=float, default=1.0, show_default=True,
                     help="Static loss scale (a power of two) of the low-precision reduction: "
                          "the baseline APS is compared against."),
        click.option("--batchnorm", type=click.Choice([m.value for m in BatchNormMode]), default="plain",
                     show_default=True,
                     help="Batch-norm statistics: per worker, synchronized across workers, or ghost."),
        click.option("--ghost-batch-size", type=int, default=None,
                     help="Virtual batch size of --batchnorm ghost."),
        click.option("--label-smoothing", type=float, default=0.0, show_default=True),
        click.option("--warmup-epochs", type=float, default=1.0, show_default=True),
        click.option("--legw", is_flag=True, help="LEGW: sqrt LR scaling, warmup grows with the batch."),
        click.option("--decay", type=click.Choice([d.value for d in Decay]),
                     default="cosine", show_default=True,
                     help="Learning rate after warmup (exponential: x0.97 per 2.4 epochs)."),
        click.option("--base-batch-size", type=int, default=64, show_default=True,
                     help="Batch size at which --lr applies (scaled linearly, sqrt under --legw)."),
        *_batch_control_options(),
        click.option("--weight-decay", type=float, default=1e-4, show_default=True),
        click.option("--kfac-update-interval", type=int, default=10, show_default=True,
                     help="kfac: steps between inverse updates (the factors are stale in between)."),
        click.option("--kfac-factor-interval", type=int, default=None,
                     help="kfac: steps between statistics collections [default: the update interval]."),
        click.option("--kfac-damping", type=float, default=1e-3, show_default=True,
                     help="kfac: Tikhonov damping, split between the factors by pi."),
        click.option("--stats-format", default=None, callback=_stats_format,
                     help="kfac: format the factors are averaged in over the workers [default: float32]."),
        click.option("--nlcg-beta", type=click.Choice([b.value for b in BetaRule]), default="pr+", show_default=True,
                     help="nlcg: Fletcher-Reeves, Polak-Ribiere(+) or Hestenes-Stiefel beta."),
        click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
                     show_default=True),
        click.option("--device", type=click.Choice([d.value for d in Device]), default="auto", show_default=True),
        click.option("--backend", type=click.Choice([b.value for b in Backend]), default="auto", show_default=True),
        click.option("--timeout", "timeout_s", type=float, default=60.0,
                     show_default=True, help="Seconds a collective may wait before the run fails."),
    ]  # fmt: skip
    return options


def shared_config(arms: tuple[ArmSpec, ...], opts: dict[str, Any]) -> RunConfig:
    """The study of ``arms`` with the shared options (click parsed them; RunConfig checks).

    Raises:
        StudyUsageError: if RunConfig rejects a value.
    """
    try:
        return RunConfig(
            arms=arms,
            dataset=opts["dataset"],
            data_dir=None if opts["data_dir"] is None else str(opts["data_dir"]),
            model=opts["model"],
            epochs=opts["epochs"],
            workers=opts["workers"],
            rounding=opts["rounding"],
            reduction=Reduction(opts["reduction"]),
            headroom=opts["headroom"],
            loss_scale=opts["loss_scale"],
            label_smoothing=opts["label_smoothing"],
            warmup_epochs=opts["warmup_epochs"],
            legw=opts["legw"],
            decay=Decay(opts["decay"]),
            base_batch_size=opts["base_batch_size"],
            batch_milestones=opts["batch_milestones"] or (),
            batch_factor=opts["batch_factor"],
            max_batch_size=opts["max_batch_size"],
            weight_decay=opts["weight_decay"],
            device=Device(opts["device"]),
            backend=Backend(opts["backend"]),
            timeout_s=opts["timeout_s"],
            batchnorm=BatchNormMode(opts["batchnorm"]),
            ghost_batch_size=opts["ghost_batch_size"],
            kfac_update_interval=opts["kfac_update_interval"],
            kfac_factor_interval=opts["kfac_factor_interval"],
            kfac_damping=opts["kfac_damping"],
            stats_format=opts["stats_format"],
            nlcg_beta=BetaRule(opts["nlcg_beta"]),
        )
    except ValueError as exc:
        raise StudyUsageError(str(exc)) from None


def executor_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--executor local|slurm`` and the Slurm settings (``sweep``, ``bits-needed``)."""
    options = [
        click.option("--executor", type=click.Choice([k.value for k in ExecutorKind]), default="local",
                     show_default=True, help="Train the runs here, or as a Slurm job array (submitit)."),
        click.option("--slurm-partition", default=None, help="Slurm partition [default: the cluster's]."),
        click.option("--slurm-time", type=click.IntRange(min=1), default=60, show_default=True,
                     help="Time limit of each Slurm task, minutes."),
        click.option("--slurm-gpus-per-task", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--slurm-cpus-per-task", type=click.IntRange(min=1), default=None,
                     help="CPUs of each Slurm task [default: one per worker]."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def slurm_settings(opts: dict[str, Any], folder: Path) -> SlurmSettings | None:
    """The Slurm settings of ``--executor slurm`` (None for local); options checked here."""
    slurm_given = [n for n in ("slurm_partition", "slurm_cpus_per_task") if opts[n] is not None]
    if opts["executor"] != ExecutorKind.SLURM.value:
        if slurm_given:
            raise click.UsageError(f"--{slurm_given[0].replace('_', '-')} needs --executor slurm")
        return None
    return SlurmSettings(
        folder=folder,
        partition=opts["slurm_partition"],
        time_min=opts["slurm_time"],
        gpus_per_task=opts["slurm_gpus_per_task"],
        cpus_per_task=opts["slurm_cpus_per_task"],
    )
