"""Access to the captured tool output under tests/data (unique module name on purpose)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"


def fixture_text(relative: str) -> str:
    return (DATA / relative).read_text(encoding="utf-8")
