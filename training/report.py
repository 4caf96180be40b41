"""Tables and plots rebuilt from the records of a run directory.

This is where records become tidy pandas DataFrames (one row per observation): every step and
every epoch evaluation of every arm in ``metrics.csv``, one row per arm in ``summary.csv``.
Nothing here trains; ``prec-study report RUN_DIR`` calls :func:`write_report` on saved records.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

import pandas as pd

from precision.common.files import atomic_save_figure, atomic_write, atomic_write_text
from precision.common.markdown import markdown_table
from training.config import ArmSpec, RunConfig
from training.environment import load_environment
from training.records import ArmRecord, EpochRecord, RunPaths, StepRecord, load_arm_record


@dataclass(frozen=True)
class RunData:
    """A run directory's configuration and the records written so far.

    Attributes:
        paths: the directory layout.
        config: the saved configuration.
        records: arm name -> record, for arms that have recorded at least one epoch.
    """

    paths: RunPaths
    config: RunConfig
    records: dict[str, ArmRecord]


def load_run(run_dir: Path) -> RunData:
    """Read ``config.json`` and every ``records/<arm>.json`` of a run directory.

    Raises:
        ConfigError: if ``config.json`` is missing or invalid.
        RecordError: if a record cannot be read.
    """
    paths = RunPaths(Path(run_dir))
    config = RunConfig.load(paths.config)
    records = {}
    for arm in config.arms:
        rec = load_arm_record(paths, arm.name)
        if rec is not None:
            records[arm.name] = rec
    return RunData(paths, config, records)


def _arm_columns(arm: ArmSpec) -> dict[str, Any]:
    return {
        "arm": arm.name,
        "format": arm.fmt or "float32",
        "bits": arm.bits,
        "aps": arm.aps,
        "batch_size": arm.batch_size,
        "optimizer": arm.optimizer,
        "base_lr": arm.lr,
        "seed": arm.seed,
    }


def _observed(record: StepRecord | EpochRecord) -> dict[str, Any]:
    """A record's fields; its batch size replaces the arm's unless an older record lacks it."""
    d = asdict(record)
    if d["batch_size"] is None:
        del d["batch_size"]
    return d


def metrics_frame(data: RunData) -> pd.DataFrame:
    """Tidy table of every step and epoch record of every arm.

    Returns:
        One row per observation; ``kind`` is ``step`` or ``epoch``; columns that do not
        apply to a kind (e.g. ``test_acc`` for a step) are NaN; ``batch_size`` is the
        global batch of the step or epoch (it grows under batch-size control).
    """
    rows: list[dict[str, Any]] = []
    for arm in data.config.arms:
        rec = data.records.get(arm.name)
        if rec is None:
            continue
        base = _arm_columns(arm)
        rows += [{**base, "kind": "step", **_observed(s)} for s in rec.steps]
        rows += [{**base, "kind": "epoch", **_observed(e)} for e in rec.epochs]
    columns = [
        *_arm_columns(data.config.arms[0]),
        "kind", "epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
        "flushed", "overflow", "step_time_s", "epoch_time_s",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def summary_frame(data: RunData) -> pd.DataFrame:
    """One row per arm: final test accuracy and loss, flushed fraction, time per step.

    Arms that have not recorded anything appear with status ``pending`` and NaN results.
    """
    rows = []
    for arm in data.config.arms:
        rec = data.records.get(arm.name)
        row: dict[str, Any] = {**_arm_columns(arm), "status": "pending", "epochs_done": 0}
        if rec is not None:
            last = rec.epochs[-1] if rec.epochs else None
            flushed = [s.flushed for s in rec.steps if s.flushed is not None]
            times = [s.step_time_s for s in rec.steps]
            row.update(
                status=rec.status.value,
                epochs_done=rec.epochs_done,
                test_acc=last.test_acc if last else math.nan,
                test_loss=last.test_loss if last else math.nan,
                best_test_acc=max(e.test_acc for e in rec.epochs) if rec.epochs else math.nan,
                flushed=sum(flushed) / len(flushed) if flushed else math.nan,
                step_time_ms=1e3 * median(times) if times else math.nan,
                method=rec.method,
            )
        rows.append(row)
    columns = [
        *_arm_columns(data.config.arms[0]),
        "status", "epochs_done", "test_acc", "test_loss", "best_test_acc", "flushed",
        "step_time_ms", "method",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "onoff":
        return "on" if value else "off"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "ms":
        return f"{value:.2f}"
    if kind == "loss":
        return f"{value:.4f}"
    return str(value)


def table_rows(summary: pd.DataFrame) -> list[tuple[str, ...]]:
    """The summary as text rows (header first) for a terminal or Markdown table."""
    spec = [
        ("arm", "arm", ""), ("format", "format", ""), ("APS", "aps", "onoff"),
        ("batch", "batch_size", ""), ("optimizer", "optimizer", ""), ("lr", "base_lr", ""),
        ("status", "status", ""), ("epochs", "epochs_done", ""),
        ("test acc", "test_acc", "pct"), ("test loss", "test_loss", "loss"),
        ("flushed to zero", "flushed", "pct"), ("ms/step", "step_time_ms", "ms"),
    ]  # fmt: skip
    varying = {c for c in ("batch_size", "optimizer", "base_lr") if summary[c].nunique() > 1}
    keep = [
        (h, c, k)
        for h, c, k in spec
        if c not in ("batch_size", "optimizer", "base_lr") or c in varying
    ]
    rows = [tuple(h for h, _, _ in keep)]
    for rec in summary.to_dict("records"):
        baseline = rec["format"] == "float32"
        rows.append(tuple("-" if baseline and c == "aps" else _fmt(rec[c], k) for _, c, k in keep))
    return rows


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV atomically."""
    atomic_write_text(path, frame.to_csv(index=False))


def ratio_text(ratio: float, ratios: list[float], target: float | None) -> str:
    """How a benchmark prints a cost ratio: ``ratio 1.23x [1.20-1.31] (target <= 1.5: ok)``.

    Args:
        ratio: the median ratio.
        ratios: the ratio of every repeat, sorted (their range is shown).
        target: the ratio the claim promises at most; None: no verdict.
    """
    verdict = ""
    if target is not None:
        verdict = f" (target <= {target}: {'ok' if ratio <= target else 'MISSED'})"
    return f"ratio {ratio:.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}]{verdict}"


def write_parquet(path: Path, frame: pd.DataFrame) -> bool:
    """Write a DataFrame as Parquet atomically when pyarrow is importable.

    Returns:
        Whether the file was written.
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return True


def plot_accuracy(metrics: pd.DataFrame, path: Path, title: str) -> None:
    """Test accuracy per epoch, one line per arm."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    epochs = metrics[metrics["kind"] == "epoch"]
    for arm, df in epochs.groupby("arm", sort=False):
        ax.plot(df["epoch"] + 1, 100 * df["test_acc"], marker="o", markersize=3, label=str(arm))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="center right")
    atomic_save_figure(fig, path)


def write_report(run_dir: Path) -> pd.DataFrame:
    """Rebuild ``metrics.csv``, ``summary.csv``, ``summary.md`` and ``accuracy.png``.

    Args:
        run_dir: a run directory with ``config.json`` and records.

    Returns:
        The summary table (one row per arm).

    Raises:
        ConfigError, RecordError: if the directory's files cannot be read.
    """
    data = load_run(run_dir)
    metrics = metrics_frame(data)
    summary = summary_frame(data)
    write_csv(data.paths.metrics, metrics)
    write_csv(data.paths.summary_csv, summary)
    cfg = data.config
    title = f"{cfg.model} on {cfg.dataset}, {cfg.workers} workers, {cfg.reduction.value} reduction"
    text = (
        f"# {data.paths.root.name}\n\n{title}, {cfg.epochs} epochs, rounding "
        f"{cfg.rounding.value}.\n\n" + markdown_table(table_rows(summary))
    )
    env, resumed = load_environment(data.paths.environment)
    if env is not None:
        text += f"\nNumerical environment: {env.describe()}.\n"
        if resumed:
            text += (
                "Resumed under a different environment (see environment.json): the bits "
                "may differ from an uninterrupted run.\n"
            )
    atomic_write_text(data.paths.summary_md, text)
    if not metrics.empty:
        plot_accuracy(metrics, data.paths.plot, title)
    return summary
