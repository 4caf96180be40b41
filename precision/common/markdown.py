"""GitHub-flavoured Markdown tables, the one table writer of every report."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table from text rows, the header first; ends with a newline.

    Raises:
        ValueError: no header row, or a row whose width differs from the header's.
    """
    if not rows:
        raise ValueError("markdown_table: no rows (the header row comes first)")
    head, *body = rows
    for i, r in enumerate(body, 1):
        if len(r) != len(head):
            raise ValueError(f"markdown_table: row {i} has {len(r)} cells, the header {len(head)}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"
