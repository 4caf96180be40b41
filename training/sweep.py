"""Grids of arms: ``run``'s three arms, and bits x APS x batch size x optimizer x learning
rate x seed.

Each grid cell is one arm of one study, so a sweep is trained, checkpointed and resumed
exactly like ``prec-study run``. The sweep directory is named after a hash of the settings
shared by all cells: rerunning the same command finds it, skips the cells whose records say
finished or diverged, and continues partial ones; adding a bit width or a seed trains only
the new cells.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd

from precision.common.files import atomic_save_figure, atomic_write_text
from precision.common.markdown import markdown_table
from precision.formats import FloatFormat, Format
from precision.registry import from_bits
from training import batch_limit
from training.config import DEFAULT_LRS, ArmSpec, ConfigError, RunConfig
from training.executor import Executor, Failure
from training.loop import run_study
from training.report import write_csv, write_parquet, write_report

SWEEP_FILE = "sweep.json"


class ApsModes(str, Enum):
    """Which APS settings a sweep tries for each low-precision format."""

    BOTH = "both"
    ON = "on"
    OFF = "off"

    @property
    def values(self) -> tuple[bool, ...]:
        return {"both": (False, True), "on": (True,), "off": (False,)}[self.value]


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """The grid.

    Attributes:
        bits: communication widths (``precision.registry.from_bits``); 32 is the float32 baseline.
        aps: APS settings tried for each low-precision width.
        batch_sizes: global batch sizes.
        optimizers: optimizer registry names.
        lrs: base learning rates per optimizer (at the config's base batch size; the
            schedule scales them to each batch size); missing optimizers use
            :data:`~training.config.DEFAULT_LRS`.
        seeds: seeds (each cell is repeated per seed).
        target_accuracy: test accuracy (a fraction) whose steps-to-target the batch-size
            study reports; None: no steps-to-target.
        limit_tolerance: accuracy loss (points) against the smallest batch that marks the
            batch-size limit.
    """

    bits: tuple[int, ...] = (4, 8, 32)
    aps: ApsModes = ApsModes.BOTH
    batch_sizes: tuple[int, ...] = (64, 256)
    optimizers: tuple[str, ...] = ("sgd",)
    lrs: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    target_accuracy: float | None = None
    limit_tolerance: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "aps", ApsModes(self.aps))
        t = self.target_accuracy
        if t is not None and not 0 < t <= 1:
            raise ConfigError(f"target accuracy {t!r}: must be a fraction in (0, 1]")
        if not self.limit_tolerance >= 0:
            raise ConfigError(f"limit tolerance {self.limit_tolerance!r}: must be >= 0 points")
        for name in ("bits", "batch_sizes", "optimizers", "seeds"):
            if not getattr(self, name):
                raise ConfigError(f"sweep {name}: needs at least one value")
        for n in self.bits:
            if n != 32:
                from_bits(n)  # raises ValueError for widths outside 3..64
        for opt in self.optimizers:
            if opt not in self.lrs and opt not in DEFAULT_LRS:
                raise ConfigError(f"optimizer {opt!r} has no default learning rates: pass --lrs")

    def lrs_for(self, optimizer: str) -> tuple[float, ...]:
        """Base learning rates tried for ``optimizer``."""
        return tuple(self.lrs.get(optimizer, DEFAULT_LRS.get(optimizer, ())))

    def arms(self) -> tuple[ArmSpec, ...]:
        """Every cell of the grid as an arm (float32 cells ignore the APS axis)."""
        out: list[ArmSpec] = []
        for seed in self.seeds:
            for opt in self.optimizers:
                for batch in self.batch_sizes:
                    for lr in self.lrs_for(opt):
                        tail = f"bs{batch}-{opt}-lr{lr:g}-s{seed}"
                        common: dict[str, Any] = {
                            "batch_size": batch, "optimizer": opt, "lr": lr, "seed": seed,
                        }  # fmt: skip
                        for n in self.bits:
                            if n == 32:
                                out.append(
                                    ArmSpec(name=f"float32-{tail}", fmt=None, aps=False, **common)
                                )
                                continue
                            fmt = from_bits(n).spelling
                            for aps in self.aps.values:
                                name = f"{fmt}-{'aps' if aps else 'noaps'}-{tail}"
                                out.append(ArmSpec(name=name, fmt=fmt, aps=aps, **common))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["aps"] = self.aps.value
        d["lrs"] = {k: list(v) for k, v in self.lrs.items()}
        return d


def three_arms(
    fmt: Format,
    *,
    batch_size: int,
    optimizer: str,
    lr: float,
    seed: int,
    which: tuple[str, ...] = ("float32", "plain", "aps"),
) -> tuple[ArmSpec, ...]:
    """The comparison of ``prec-study run``: float32, ``fmt`` without APS, ``fmt`` with APS.

    Args:
        fmt: the low-precision communication format.
        batch_size: global batch size of every arm.
        optimizer: optimizer of every arm.
        lr: base learning rate of every arm.
        seed: seed of every arm (same initialization and data order).
        which: subset of ``float32``, ``plain`` and ``aps``, in the order to run them.

    Returns:
        The arms.

    Raises:
        ConfigError: if ``which`` is empty or names an unknown arm kind, or ``fmt`` is not a
            float format.
    """
    if not which or set(which) - {"float32", "plain", "aps"}:
        raise ConfigError(f"arms {', '.join(which) or '(none)'}: choose from float32, plain, aps")
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "optimizer": optimizer,
        "lr": lr,
        "seed": seed,
    }
    spelling = fmt.spelling if isinstance(fmt, FloatFormat) else str(fmt)  # ArmSpec rejects it
    kinds = {
        "float32": ArmSpec(name="float32", fmt=None, aps=False, **common),
        "plain": ArmSpec(name=str(fmt), fmt=spelling, aps=False, **common),
        "aps": ArmSpec(name=f"{fmt}-aps", fmt=spelling, aps=True, **common),
    }
    return tuple(kinds[k] for k in dict.fromkeys(which))


def sweep_dir(output_dir: Path, shared: RunConfig) -> Path:
    """``<output_dir>/sweep-<hash of the shared settings>``: the same command, the same dir."""
    text = json.dumps(shared.shared(), sort_keys=True)
    return Path(output_dir) / f"sweep-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def run_sweep(
    spec: SweepSpec,
    shared: RunConfig,
    output_dir: Path,
    *,
    on_event: Callable[[Any], None] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Train every cell not already finished, then write the results table and plots.

    Args:
        spec: the grid.
        shared: settings common to all cells (its ``arms`` are replaced by the grid).
        output_dir: parent of the sweep directory.
        on_event: progress events from rank 0.

    Returns:
        The sweep directory and the results table (one row per cell).

    Raises:
        ConfigError: if the grid is invalid for ``shared`` (e.g. batch not divisible).
        WorkerError: if a worker fails.
    """
    cfg = dataclasses.replace(shared, arms=spec.arms())
    root = sweep_dir(output_dir, shared)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / SWEEP_FILE, json.dumps(spec.to_dict(), indent=2) + "\n")
    run_study(cfg, root, on_event=on_event)
    return root, write_sweep_report(root)


def write_sweep_report(root: Path) -> pd.DataFrame:
    """Results table (CSV, and Parquet when pyarrow imports), the spread over seeds, the
    batch-size-limit study (:mod:`training.batch_limit`, with the target accuracy and
    tolerance saved in ``sweep.json``) and the sweep plots.

    Returns:
        The results table, one row per cell.
    """
    results = write_report(root)  # the summary: one row per cell
    write_csv(root / "results.csv", results)
    write_parquet(root / "results.parquet", results)
    spread = seed_spread(results)
    if not spread.empty:
        write_csv(root / "seeds.csv", spread)
        atomic_write_text(root / "seeds.md", seed_spread_markdown(spread))
    _write_batch_study(root, results)
    best = best_lr(results)
    if not best.empty:
        _plot_vs(best, "bits", root / "accuracy_vs_bits.png", "communication bits", log2=False)
        _plot_vs(best, "batch_size", root / "accuracy_vs_batch.png", "global batch size", log2=True)
    return results


def _write_batch_study(root: Path, results: pd.DataFrame) -> None:
    """scaling.md/csv, limits.csv and steps_to_target.png (with a target) from the
    sweep's results, when its grid has more than one batch size."""
    spec = json.loads((root / SWEEP_FILE).read_text()) if (root / SWEEP_FILE).exists() else {}
    target, tol = spec.get("target_accuracy"), float(spec.get("limit_tolerance", 1.0))
    if results["batch_size"].nunique() < 2:
        return
    metrics = pd.read_csv(root / "metrics.csv") if (root / "metrics.csv").exists() else None
    if metrics is None or metrics.empty:
        return
    scaling = batch_limit.batch_scaling(results, metrics, target)
    if scaling.empty:
        return
    limits = batch_limit.batch_limits(scaling, tol)
    write_csv(root / "scaling.csv", scaling)
    write_csv(root / "limits.csv", limits)
    atomic_write_text(
        root / "scaling.md", batch_limit.scaling_markdown(scaling, limits, target, tol)
    )
    if target is not None:
        batch_limit.plot_steps_to_target(scaling, root / "steps_to_target.png", target)


def best_lr(results: pd.DataFrame) -> pd.DataFrame:
    """For each (bits, APS, batch, optimizer): the learning rate with the best mean accuracy.

    Diverged cells count as accuracy 0 so that a learning rate that diverges never wins.
    """
    done = results[results["status"].isin(["finished", "diverged"])].copy()
    if done.empty:
        return done
    done["acc"] = done["test_acc"].where(done["status"] == "finished", 0.0).fillna(0.0)
    keys = ["bits", "aps", "batch_size", "optimizer"]
    mean = done.groupby([*keys, "base_lr"], as_index=False)["acc"].mean()
    idx = mean.groupby(keys)["acc"].idxmax()
    return mean.loc[idx].reset_index(drop=True)


def seed_spread(results: pd.DataFrame) -> pd.DataFrame:
    """Across seeds, per cell (bits, APS, batch, optimizer, learning rate) of finished arms:
    how many seeds, and the mean, lowest and highest final test accuracy and flushed share.

    Returns:
        One row per cell that finished with at least two seeds (empty otherwise).
    """
    done = results[results["status"] == "finished"]
    keys = ["format", "bits", "aps", "batch_size", "optimizer", "base_lr"]
    if done.empty:
        return pd.DataFrame(columns=keys)
    grouped = done.groupby(keys, sort=False)
    out = grouped.agg(
        seeds=("seed", "nunique"),
        acc_mean=("test_acc", "mean"),
        acc_min=("test_acc", "min"),
        acc_max=("test_acc", "max"),
        flushed_mean=("flushed", "mean"),
        flushed_min=("flushed", "min"),
        flushed_max=("flushed", "max"),
    ).reset_index()
    return out[out["seeds"] >= 2].reset_index(drop=True)


def seed_spread_markdown(spread: pd.DataFrame) -> str:
    """The :func:`seed_spread` table as Markdown (percentages; '-' where not measured)."""

    def pct(v: float) -> str:
        return "-" if pd.isna(v) else f"{100 * v:.1f}%"

    rows = [("format", "APS", "batch", "optimizer", "lr", "seeds", "test acc: mean", "range",
             "flushed: mean", "range")]  # fmt: skip
    for r in spread.itertuples(index=False):
        aps = "-" if r.bits == 32 else ("on" if r.aps else "off")
        rows.append((
            str(r.format), aps, str(r.batch_size), str(r.optimizer), f"{r.base_lr:g}",
            str(r.seeds), pct(r.acc_mean), f"{pct(r.acc_min)} .. {pct(r.acc_max)}",
            pct(r.flushed_mean),
            "-" if pd.isna(r.flushed_mean) else f"{pct(r.flushed_min)} .. {pct(r.flushed_max)}",
        ))  # fmt: skip
    return "# Spread over seeds\n\n" + markdown_table(rows)


def _label(bits: int, aps: bool) -> str:
    return "float32" if bits == 32 else f"{bits}-bit {'APS' if aps else 'no APS'}"


def _plot_vs(best: pd.DataFrame, x: str, path: Path, xlabel: str, *, log2: bool) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    if x == "bits":
        groups = best.groupby(["aps", "batch_size", "optimizer"])
        for (aps, batch, opt), df in groups:
            base = best[
                (best["bits"] == 32) & (best["batch_size"] == batch) & (best["optimizer"] == opt)
            ]
            df = pd.concat([df[df["bits"] != 32], base]).sort_values("bits")
            label = f"{'APS' if aps else 'no APS'}, batch {batch}, {opt}"
            ax.plot(df["bits"], 100 * df["acc"], marker="o", label=label)
    else:
        for (bits, aps, opt), df in best.groupby(["bits", "aps", "optimizer"]):
            df = df.sort_values(x)
            ax.plot(
                df[x], 100 * df["acc"], marker="o", label=f"{_label(int(bits), bool(aps))}, {opt}"
            )
        if log2:
            ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%), best learning rate")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    atomic_save_figure(fig, path)


#: Cells whose cluster jobs failed twice, with the error (written by :func:`run_sweep_jobs`).
FAILED_FILE = "failed.json"


def run_sweep_jobs(
    spec: SweepSpec, shared: RunConfig, output_dir: Path, executor: Executor
) -> tuple[Path, pd.DataFrame, dict[str, str]]:
    """Train every cell as an independent job (e.g. one task of a Slurm job array).

    Each job trains one cell into the same sweep directory as :func:`run_sweep` would, so
    the report, resuming and ``prec-study report`` are the same. Cells whose jobs failed
    (after the executor's retry) are listed in ``failed.json``.

    Args:
        spec: the grid.
        shared: settings common to all cells.
        output_dir: parent of the sweep directory.
        executor: where the cells train.

    Returns:
        The sweep directory, the results table, and failed cell -> error.

    Raises:
        ConfigError: if the grid is invalid for ``shared``.
        ExecutorError: if the jobs cannot be submitted.
    """
    cfg = dataclasses.replace(shared, arms=spec.arms())
    root = sweep_dir(output_dir, shared)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / SWEEP_FILE, json.dumps(spec.to_dict(), indent=2) + "\n")
    cfg.save(root / "config.json")
    jobs = [(dataclasses.replace(shared, arms=(arm,)), root) for arm in cfg.arms]
    failed = {
        arm.name: out.error
        for arm, out in zip(cfg.arms, executor.map(jobs), strict=True)
        if isinstance(out, Failure)
    }
    atomic_write_text(root / FAILED_FILE, json.dumps(failed, indent=2) + "\n")
    return root, write_sweep_report(root), failed
