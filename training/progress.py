"""What ``prec-study`` prints while it works: progress lines and aligned tables."""

from __future__ import annotations

from typing import Any

import click

from training.loop import Progress


def format_number(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if j == 0:
            click.echo("  ".join("-" * w for w in widths))


def show_progress(event: Any) -> None:
    if not isinstance(event, Progress):
        return
    if event.status == "epoch" and event.record is not None:
        r = event.record
        flushed = "" if r.flushed is None else f"  flushed {100 * r.flushed:5.1f}%"
        ms = "" if event.step_time_s is None else f"  {1e3 * event.step_time_s:.1f} ms/step"
        click.echo(
            f"[{event.arm}] epoch {event.epoch}/{event.epochs}  loss {r.train_loss:.4f}  "
            f"test acc {100 * r.test_acc:5.1f}%{flushed}{ms}",
            err=True,
        )
    elif event.status == "start":
        click.echo(f"[{event.arm}] training from epoch {event.epoch}", err=True)
    elif event.status == "skip":
        click.echo(f"[{event.arm}] already done ({event.epoch} epochs), skipped", err=True)
    elif event.status in ("diverged", "partial"):
        click.echo(f"[{event.arm}] {event.status} after {event.epoch} epochs", err=True)
