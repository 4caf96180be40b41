"""Bits needed: emulated apps, the pure 'fewest bits' rule, monotonicity, and the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hpcprof.analysis.bits import BitsPoint, needed_bits, result, sweep
from hpcprof.analysis.emulate import EMULATIONS, emulation
from hpcprof.cli.main import main
from hpcprof.errors import UnknownNameError

COARSE = (20, 24, 28, 32, 36, 40, 44, 48, 52)


@pytest.fixture(scope="module")
def cg_points() -> list[BitsPoint]:
    return sweep("cg", mantissa_bits=COARSE)


def test_cg_needs_between_20_and_52_bits(cg_points: list[BitsPoint]) -> None:
    bits = needed_bits(cg_points, 1e-8)
    assert bits is not None and 20 <= bits <= 52
    by = {p.mantissa_bits: p.error for p in cg_points if p.exponent_bits == 11}
    assert by[52] < 1e-12  # float64 arithmetic: CG converges
    assert by[20] > by[52]  # fewer bits, larger residual
    res = result(cg_points, 1e-8)
    assert res.bfloat16_ok is False and res.rounding


@given(tols=st.lists(st.floats(1e-16, 1.0), min_size=2, max_size=6))
def test_bits_needed_monotone_in_tolerance(cg_points: list[BitsPoint], tols: list[float]) -> None:
    tols = sorted(tols)
    bits = [needed_bits(cg_points, t) for t in tols]
    widest = 10**6  # None (nothing passes) counts as more than any width
    ranks = [widest if b is None else b for b in bits]
    assert ranks == sorted(ranks, reverse=True)  # looser tolerance -> fewer or equal bits


def _pt(m: int, err: float) -> BitsPoint:
    return BitsPoint(app="x", size=1, format=f"e11m{m}", exponent_bits=11, mantissa_bits=m,
                     error=err)  # fmt: skip


def test_needed_bits_is_a_suffix_rule() -> None:
    points = [_pt(20, 1e-9), _pt(24, 1e-3), _pt(28, 1e-9), _pt(32, 1e-12)]
    assert needed_bits(points, 1e-8) == 28  # the lucky 20-bit pass does not count
    assert needed_bits(points, 1e-2) == 20
    assert needed_bits(points, 1e-13) is None
    assert needed_bits([_pt(20, math.nan), _pt(24, 0.0)], 1e-3) == 24
    with pytest.raises(ValueError, match="tolerance"):
        needed_bits(points, 0.0)


@pytest.mark.parametrize("app", list(EMULATIONS))
def test_emulation_error_shrinks_with_bits(app: str) -> None:
    info = emulation(app)
    pts = sweep(app, size=max(4, info.size // 2), mantissa_bits=(20, 52), extra=())
    narrow, wide = pts
    assert narrow.error > wide.error
    assert wide.error < 1e-12


def test_unknown_app_and_bad_bits() -> None:
    with pytest.raises(UnknownNameError, match="cg"):
        sweep("md")
    with pytest.raises(ValueError, match="mantissa"):
        sweep("triad", mantissa_bits=(60,))


def test_cli_bits_needed_writes_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "bits"
    result = CliRunner().invoke(
        main,
        ["bits-needed", "--app", "triad", "--size", "triad=2000", "--min-bits", "20",
         "--step", "8", "--tolerance", "1e-6", "--out", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| triad | 2000 | 1e-06 |" in result.output
    assert (out / "bits_needed.png").read_bytes()[:4] == b"\x89PNG"
    assert "e11m28" in (out / "bits_needed.csv").read_text()


def test_cli_bits_needed_bad_input_one_line(tmp_path: Path) -> None:
    for args in (["--min-bits", "40", "--max-bits", "30"], ["--size", "gemm=x"],
                 ["--app", "nosuch"], ["--tolerance", "0"]):  # fmt: skip
        result = CliRunner().invoke(main, ["bits-needed", *args, "--out", str(tmp_path)])
        assert result.exit_code == 2, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
