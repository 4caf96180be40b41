"""The batch-size-limit analysis of a sweep (Shallue et al. style; arXiv:2006.08517 §4).

From a sweep's cells: for each (format, APS, optimizer, batch size) the best learning rate of
the grid, its final accuracy and the steps (and epochs) it took to first reach a target test
accuracy; then, per (format, APS, optimizer), the *batch-size limit*: the first batch size
whose best accuracy is more than ``tolerance`` below the smallest batch size's. Perfect
scaling halves the steps to target when the batch doubles: a line of slope -1 on the log-log
steps-to-target plot.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from training.report import RunData, save_figure

KEYS = ["bits", "aps", "optimizer"]


def steps_to_target(data: RunData, target: float) -> pd.DataFrame:
    """Steps and epochs each arm took to first reach ``target`` test accuracy.

    Args:
        data: a sweep's (or run's) records.
        target: test accuracy in [0, 1].

    Returns:
        One row per recorded arm: ``arm``, ``steps_to_target``, ``epochs_to_target`` (NaN when
        the arm never reached it).

    Raises:
        ValueError: if ``target`` is outside [0, 1].
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target accuracy {target}: must be in [0, 1]")
    rows = []
    for name, rec in data.records.items():
        hit = next((e for e in rec.epochs if e.test_acc >= target), None)
        rows.append(
            {
                "arm": name,
                "steps_to_target": math.nan if hit is None else hit.step,
                "epochs_to_target": math.nan if hit is None else hit.epoch + 1,
            }
        )
    return pd.DataFrame(rows, columns=["arm", "steps_to_target", "epochs_to_target"])


def best_cells(results: pd.DataFrame, reached: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (bits, APS, optimizer, batch size): the best learning rate's mean accuracy.

    Diverged cells count as accuracy 0 so a diverging rate never wins. With ``reached``
    (from :func:`steps_to_target`), the best rate's median steps/epochs to target are added.

    Returns:
        Columns ``bits, aps, optimizer, batch_size, base_lr, acc`` (and the target columns).
    """
    done = results[results["status"].isin(["finished", "diverged"])].copy()
    cols = [*KEYS, "batch_size", "base_lr", "acc"]
    if done.empty:
        return pd.DataFrame(columns=cols)
    done["acc"] = done["test_acc"].where(done["status"] == "finished", 0.0).fillna(0.0)
    if reached is not None:
        done = done.merge(reached, on="arm", how="left")
    agg = {"acc": "mean"}
    if reached is not None:
        agg.update(steps_to_target="median", epochs_to_target="median")
    mean = done.groupby([*KEYS, "batch_size", "base_lr"], as_index=False).agg(agg)
    idx = mean.groupby([*KEYS, "batch_size"])["acc"].idxmax()
    return mean.loc[idx].sort_values([*KEYS, "batch_size"]).reset_index(drop=True)


def batch_size_limit(best: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """The first batch size losing more than ``tolerance`` accuracy against the smallest.

    Args:
        best: from :func:`best_cells`.
        tolerance: allowed accuracy loss (absolute, e.g. 0.01 for one point).

    Returns:
        Per (bits, APS, optimizer): ``reference_batch``, ``reference_acc``, ``limit_batch``
        (NaN: no batch size of the grid lost that much) and ``largest_ok_batch``.

    Raises:
        ValueError: if ``tolerance`` is negative.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance {tolerance}: must be >= 0")
    rows = []
    for key, df in best.groupby(KEYS):
        df = df.sort_values("batch_size")
        ref = df.iloc[0]
        lost = df[df["acc"] < ref["acc"] - tolerance]
        limit = math.nan if lost.empty else int(lost["batch_size"].iloc[0])
        ok = df[df["batch_size"] < limit] if not lost.empty else df
        rows.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                "reference_batch": int(ref["batch_size"]),
                "reference_acc": float(ref["acc"]),
                "limit_batch": limit,
                "largest_ok_batch": int(ok["batch_size"].iloc[-1]),
            }
        )
    return pd.DataFrame(
        rows, columns=[*KEYS, "reference_batch", "reference_acc", "limit_batch", "largest_ok_batch"]
    )


def plot_steps_to_target(best: pd.DataFrame, path: Path, target: float) -> None:
    """Log-log steps to target vs batch size per (format, APS, optimizer), with slope -1."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    reached = best.dropna(subset=["steps_to_target"])
    for (bits, aps, opt), df in reached.groupby(KEYS):
        label = f"{'float32' if bits == 32 else f'{bits}-bit'}{' APS' if aps else ''}, {opt}"
        ax.plot(df["batch_size"], df["steps_to_target"], marker="o", label=label)
    if not reached.empty:
        first = reached.sort_values("batch_size").iloc[0]
        b0, s0 = float(first["batch_size"]), float(first["steps_to_target"])
        xs = sorted(reached["batch_size"].unique())
        ax.plot(xs, [s0 * b0 / x for x in xs], "k--", lw=1, label="perfect scaling (slope -1)")
        ax.legend(fontsize="small")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("global batch size")
    ax.set_ylabel(f"steps to {100 * target:g}% test accuracy")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
