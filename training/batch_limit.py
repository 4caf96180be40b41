"""The batch-size-limit study (arXiv 2006.08517) on a sweep's results.

For each communication format, optimizer and batch size of a sweep: the best learning rate
of the grid (best mean final accuracy over seeds), its final accuracy, and the steps and
epochs it took to first reach a target test accuracy. For each format and optimizer: the
*batch-size limit*, the first batch size whose accuracy falls more than a tolerance below
that of the smallest batch. Perfect scaling halves the steps to target when the batch
doubles (a line of slope -1 on log-log axes); the limit is where that stops.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from precision.common.files import atomic_save_figure
from precision.common.markdown import markdown_table

CELL = ["bits", "aps", "optimizer", "batch_size"]
LINE = ["bits", "aps", "optimizer"]


def steps_to_target(metrics: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per arm: the optimizer steps and epochs done when its test accuracy first reached
    ``target`` (a fraction); NaN for arms that never did.

    Args:
        metrics: the tidy ``metrics.csv`` table (its ``epoch`` rows are read).
        target: test accuracy to reach, in (0, 1].

    Returns:
        Columns ``arm``, ``steps_to_target``, ``epochs_to_target``.
    """
    epochs = metrics[metrics["kind"] == "epoch"]
    rows = []
    for arm, df in epochs.groupby("arm", sort=False):
        hit = df[df["test_acc"] >= target]
        first = hit.iloc[0] if len(hit) else None
        rows.append(
            {
                "arm": arm,
                "steps_to_target": float(first["step"]) if first is not None else math.nan,
                "epochs_to_target": float(first["epoch"] + 1) if first is not None else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["arm", "steps_to_target", "epochs_to_target"])


def batch_scaling(
    results: pd.DataFrame, metrics: pd.DataFrame, target: float | None
) -> pd.DataFrame:
    """One row per (bits, APS, optimizer, batch size) at its best learning rate.

    The best learning rate has the best mean final accuracy over seeds; a diverged cell
    counts as 0 so that it never wins. Steps and epochs to ``target`` are the mean over the
    seeds, and NaN unless every seed reached it (``reached`` says how many did).

    Args:
        results: the sweep's results table (one row per arm).
        metrics: the sweep's ``metrics.csv`` table.
        target: test accuracy (fraction) for the steps-to-target columns; None: no such
            columns' values (NaN).

    Returns:
        Columns: the cell keys, ``best_lr``, ``seeds``, ``acc``, ``acc_min``, ``acc_max``,
        ``reached``, ``steps_to_target``, ``epochs_to_target``.
    """
    cols = [*CELL, "best_lr", "seeds", "acc", "acc_min", "acc_max", "reached",
            "steps_to_target", "epochs_to_target"]  # fmt: skip
    done = results[results["status"].isin(["finished", "diverged"])].copy()
    if done.empty:
        return pd.DataFrame(columns=cols)
    done["acc"] = done["test_acc"].where(done["status"] == "finished", 0.0).fillna(0.0)
    if target is not None:
        done = done.merge(steps_to_target(metrics, target), on="arm", how="left")
    else:
        done["steps_to_target"] = done["epochs_to_target"] = math.nan
    rows = []
    for key, cell in done.groupby(CELL, sort=True):
        means = cell.groupby("base_lr")["acc"].mean()
        lr = float(means.idxmax())
        best = cell[cell["base_lr"] == lr]
        reached = int(best["steps_to_target"].notna().sum())
        every = reached == len(best) and target is not None
        rows.append(
            {
                **dict(zip(CELL, key, strict=True)),
                "best_lr": lr,
                "seeds": len(best),
                "acc": float(best["acc"].mean()),
                "acc_min": float(best["acc"].min()),
                "acc_max": float(best["acc"].max()),
                "reached": reached if target is not None else None,
                "steps_to_target": float(best["steps_to_target"].mean()) if every else math.nan,
                "epochs_to_target": float(best["epochs_to_target"].mean()) if every else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def batch_limits(scaling: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per (bits, APS, optimizer): the largest batch size within ``tolerance`` of the
    smallest batch's accuracy, and the first one beyond it (the batch-size limit).

    Args:
        scaling: :func:`batch_scaling`'s table.
        tolerance: allowed accuracy loss in points (0.5 = half a percentage point).

    Returns:
        Columns: ``bits``, ``aps``, ``optimizer``, ``base_batch``, ``base_acc``,
        ``largest_within``, ``limit`` (None when no batch size of the grid lost more).
    """
    cols = [*LINE, "base_batch", "base_acc", "largest_within", "limit"]
    rows = []
    for key, line in scaling.groupby(LINE, sort=True):
        line = line.sort_values("batch_size")
        base = line.iloc[0]
        floor = base["acc"] - tolerance / 100
        largest, limit = int(base["batch_size"]), None
        for r in line.iloc[1:].itertuples(index=False):
            if r.acc < floor:
                limit = int(r.batch_size)
                break
            largest = int(r.batch_size)
        rows.append(
            {
                **dict(zip(LINE, key, strict=True)),
                "base_batch": int(base["batch_size"]),
                "base_acc": float(base["acc"]),
                "largest_within": largest,
                "limit": limit,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _label(bits: int, aps: bool, optimizer: str) -> str:
    fmt = "float32" if bits == 32 else f"{bits}-bit {'APS' if aps else 'no APS'}"
    return f"{optimizer}, {fmt}"


def _pct(v: float) -> str:
    return "-" if pd.isna(v) else f"{100 * v:.1f}%"


def _num(v: float) -> str:
    return "-" if pd.isna(v) else f"{v:g}"


def scaling_markdown(
    scaling: pd.DataFrame, limits: pd.DataFrame, target: float | None, tolerance: float
) -> str:
    """Both tables as Markdown, with what the columns mean."""
    reach = f"{100 * target:g}%" if target is not None else "-"
    rows = [("optimizer", "format", "batch", "best lr", "seeds", "test acc", "range",
             f"steps to {reach}", f"epochs to {reach}")]  # fmt: skip
    for r in scaling.itertuples(index=False):
        rows.append((
            str(r.optimizer), _label(int(r.bits), bool(r.aps), "").lstrip(", "),
            str(r.batch_size), _num(r.best_lr), str(r.seeds), _pct(r.acc),
            f"{_pct(r.acc_min)} .. {_pct(r.acc_max)}", _num(r.steps_to_target),
            _num(r.epochs_to_target),
        ))  # fmt: skip
    lim = [("optimizer", "format", "smallest batch", "its acc", "largest within",
            "batch-size limit")]  # fmt: skip
    for r in limits.itertuples(index=False):
        lim.append((
            str(r.optimizer), _label(int(r.bits), bool(r.aps), "").lstrip(", "),
            str(r.base_batch), _pct(r.base_acc), str(r.largest_within),
            "none in the grid" if r.limit is None or pd.isna(r.limit) else str(int(r.limit)),
        ))  # fmt: skip
    return (
        "# Batch-size scaling\n\nBest learning rate of the grid per cell (mean final test "
        "accuracy over seeds); steps and epochs to the target are means over seeds, counted "
        "at the end of the first epoch whose evaluation reached it, '-' when a seed never "
        "did.\n\n"
        + markdown_table(rows)
        + f"\n## Batch-size limit (tolerance {tolerance:g} points)\n\nThe first batch size "
        "whose accuracy is more than the tolerance below the smallest batch's.\n\n"
        + markdown_table(lim)
    )


def plot_steps_to_target(scaling: pd.DataFrame, path: Path, target: float) -> bool:
    """Steps to ``target`` against batch size, log-log, with the perfect-scaling line
    (slope -1) through each curve's smallest batch. Returns whether anything was drawn."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    drawn = False
    for (bits, aps, opt), df in scaling.groupby(LINE, sort=True):
        df = df.dropna(subset=["steps_to_target"]).sort_values("batch_size")
        if df.empty:
            continue
        (line,) = ax.plot(
            df["batch_size"], df["steps_to_target"], marker="o",
            label=_label(int(bits), bool(aps), str(opt)),
        )  # fmt: skip
        b0, s0 = float(df["batch_size"].iloc[0]), float(df["steps_to_target"].iloc[0])
        xs = [b0, float(df["batch_size"].iloc[-1])]
        ax.plot(xs, [s0 * b0 / x for x in xs], ls=":", color=line.get_color(), lw=1)
        drawn = True
    if not drawn:
        return False
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("global batch size")
    ax.set_ylabel(f"steps to {100 * target:g}% test accuracy")
    ax.set_title("dotted: perfect scaling (slope -1)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    atomic_save_figure(fig, path)
    return True
