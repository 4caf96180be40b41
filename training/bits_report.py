"""Tables, summary and heatmaps of a bits-needed search.

``points.csv`` (and ``points.parquet`` when pyarrow imports) is tidy: one row per trained
point and seed. ``summary.md`` gives each role's answer; ``heatmap-<role>.png`` shows
accuracy over exponent x mantissa bits, one panel per variant, with the passing region
outlined.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from precision.common.files import atomic_save_figure, atomic_write_text
from precision.common.markdown import markdown_table
from training.bits_points import Point, PointCache, PointResult, PointStatus
from training.bits_search import SearchError, SearchResult, SearchSpec, VariantAnswer, search_bits
from training.report import write_csv, write_parquet
from training.roles import Role

COLUMNS = ["role", "e", "m", "aps", "rounding", "seed", "accuracy", "loss", "status",
           "drop_points", "passed", "settings", "point"]  # fmt: skip


def points_frame(
    points: list[tuple[Point, PointResult]], baseline: dict[int, PointResult], tolerance: float
) -> pd.DataFrame:
    """Tidy table: one row per point and seed.

    Single-role points fill ``e``, ``m``, ``aps`` and ``rounding``; the float32 baseline and
    the combination leave them empty and name their settings in ``settings``. ``passed``
    is this seed's verdict (within ``tolerance`` points of its float32 run).
    """
    rows: list[dict[str, Any]] = []
    for point, r in points:
        row: dict[str, Any] = {
            "role": point.kind, "seed": point.seed, "accuracy": r.accuracy, "loss": r.loss,
            "status": r.status.value, "point": point.key,
            "settings": ", ".join(s.label for s in point.settings) or "float32",
        }  # fmt: skip
        if len(point.settings) == 1:
            (s,) = point.settings
            row.update(e=s.e, m=s.m, aps=s.aps, rounding=s.rounding.value)
        base = baseline.get(point.seed)
        if base is not None and base.accuracy is not None and r.accuracy is not None:
            row["drop_points"] = 100 * (base.accuracy - r.accuracy)
            row["passed"] = r.status is PointStatus.FINISHED and (
                row["drop_points"] <= tolerance + 1e-9
            )
        elif base is not None:
            row["passed"] = False
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["e"], frame["m"] = frame["e"].astype("Int64"), frame["m"].astype("Int64")
    frame["aps"] = frame["aps"].astype("boolean")
    return frame.sort_values(["role", "aps", "rounding", "e", "m", "seed"], na_position="first")


def _variant_name(v: VariantAnswer) -> str:
    aps = (" with APS" if v.aps else " without APS") if v.role is Role.GRAD_COMM else ""
    return f"{v.rounding.value}{aps}"


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def answer_lines(spec: SearchSpec, result: SearchResult) -> list[str]:
    """One line per role: ``grad-comm: e3m0 nearest with APS, e5m2 nearest without APS``."""
    lines = []
    for role in spec.roles:
        parts = [
            f"{v.best.fmt if v.best else 'none passes'} {_variant_name(v)}".rstrip()
            for v in result.variants
            if v.role is role
        ]
        lines.append(f"{role.value}: " + ", ".join(parts))
    return lines


def summary_markdown(title: str, spec: SearchSpec, result: SearchResult) -> str:
    """The answer per role, the fewest mantissa bits per exponent, the combination, notes."""
    lines = [f"# {title}", ""]
    base = ", ".join(f"seed {s}: {_pct(r.accuracy)}" for s, r in result.baseline.items())
    lines += [
        f"float32 test accuracy: {base}. Tolerance {spec.tolerance:g} points (worst of "
        f"{len(spec.seeds)} seed(s)); exponent {spec.max_exponent}..{spec.min_exponent}, "
        f"mantissa up to {spec.max_mantissa}.",
        "",
        "## Answer",
        "",
    ]
    lines += [f"- {line}" for line in answer_lines(spec, result)]
    rows = [("role", "variant", "narrowest", "bits", "fewest mantissa bits per exponent")]
    for v in result.variants:
        per_e = ", ".join(f"e{e}: {'fails' if m is None else f'm{m}'}"
                          for e, m in v.min_mantissa.items())  # fmt: skip
        bits = "-" if v.best is None else str(1 + v.best.e + v.best.m)
        rows.append((v.role.value, _variant_name(v), v.best.fmt if v.best else "-", bits, per_e))
    lines += ["", markdown_table(rows).rstrip(), ""]
    if result.combination is not None:
        c = result.combination
        verdict = "passes" if c.measure.passed else "FAILS"
        if c.measure.accuracy is None:
            how = "no final accuracy: the run diverged or failed, see points.csv"
        else:
            drop = "-" if c.measure.drop is None else f"{c.measure.drop:.2f}"
            how = f"accuracy {_pct(c.measure.accuracy)}, drop {drop} points"
        lines += [
            "## Combination",
            "",
            f"{', '.join(s.label for s in c.settings)} together: {verdict} ({how}).",
            "",
        ]
    if result.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in result.notes], ""]
    return "\n".join(lines)


def plot_heatmap(frame: pd.DataFrame, role: Role, spec: SearchSpec, path: Path) -> None:
    """Worst accuracy over seeds per (exponent, mantissa), one panel per variant."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    df = frame[frame["role"] == role.value]
    variants = spec.variants(role)
    fig = Figure(figsize=(3.2 * len(variants) + 1.0, 3.4))
    axes = fig.subplots(1, len(variants), squeeze=False)[0]
    exps = list(range(spec.min_exponent, spec.max_exponent + 1))
    mants = list(range(spec.max_mantissa + 1))
    image = None
    for ax, (rounding, aps) in zip(axes, variants, strict=True):
        sub = df[(df["rounding"] == rounding.value) & (df["aps"] == aps)]
        worst = sub.groupby(["e", "m"]).agg(acc=("accuracy", "min"), ok=("passed", "all"))
        grid = [[math.nan] * len(mants) for _ in exps]
        ok = set()
        for (e, m), row in worst.iterrows():
            grid[int(e) - spec.min_exponent][int(m)] = (
                100 * row["acc"] if row["acc"] == row["acc"] else 0.0
            )
            if row["ok"]:
                ok.add((int(e), int(m)))
        image = ax.imshow(grid, origin="lower", aspect="auto", vmin=0, vmax=100, cmap="viridis",
                          extent=(-0.5, len(mants) - 0.5, exps[0] - 0.5, exps[-1] + 0.5))  # fmt: skip
        for e, m in ok:  # outline the passing region: edges shared with a non-passing cell
            for de, dm, xy, w, h in ((0, -1, (m - 0.5, e - 0.5), 0, 1), (0, 1, (m + 0.5, e - 0.5), 0, 1),
                                     (-1, 0, (m - 0.5, e - 0.5), 1, 0), (1, 0, (m - 0.5, e + 0.5), 1, 0)):  # fmt: skip
                if (e + de, m + dm) not in ok:
                    ax.add_patch(Rectangle(xy, w, h, fill=False, edgecolor="red", linewidth=2))
        title = rounding.value + ((" APS" if aps else " no APS") if role is Role.GRAD_COMM else "")
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("mantissa bits")
        ax.set_xticks(mants)
        ax.set_yticks(exps)
    axes[0].set_ylabel("exponent bits")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="test accuracy (%), worst seed")
    fig.suptitle(f"{role.value}: passing region outlined (red)", fontsize="medium")
    atomic_save_figure(fig, path)


def write_search_report(
    root: Path, title: str, spec: SearchSpec, result: SearchResult
) -> pd.DataFrame:
    """Write points.csv (and .parquet), summary.md and one heatmap per role.

    Returns:
        The points table.
    """
    frame = points_frame(list(result.points), result.baseline, spec.tolerance)
    write_csv(root / "points.csv", frame)
    write_parquet(root / "points.parquet", frame)
    atomic_write_text(root / "summary.md", summary_markdown(title, spec, result))
    for role in spec.roles:
        plot_heatmap(frame, role, spec, root / f"heatmap-{role.value}.png")
    return frame


def rebuild_search(root: Path) -> tuple[SearchSpec, SearchResult]:
    """Replay a search from its cached points alone (``prec-study report`` on its directory).

    Raises:
        SearchError: ``search.json`` is missing or invalid, or a point the search needs was
            not trained yet (run ``bits-needed`` again to train it).
        RecordError: a cached point is unreadable.
    """
    path = Path(root) / "search.json"
    try:
        spec = SearchSpec.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise SearchError(f"{path}: cannot read the search settings ({exc})") from None

    def untrained(point: Point) -> PointResult:
        raise SearchError(f"point {point.key} is not trained yet: rerun bits-needed to train it")

    return spec, search_bits(spec, untrained, cache=PointCache(root))
