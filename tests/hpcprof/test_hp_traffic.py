"""Bound vs measured traffic: the cache-simulation profile parser on a captured profile, the
cache options, and real callgrind runs of GEMM (C and NumPy) held against the bound."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcprof.analysis.traffic import (
    TARGETS,
    cache_args,
    markdown,
    measure,
    parse_totals,
    plot,
    words_moved,
)
from hpcprof.cli.main import main
from hpcprof.errors import BackendError
from hpcprof.run.build import find_compiler

DATA = Path(__file__).resolve().parents[1] / "data" / "callgrind"
needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None
    or find_compiler() is None
    or not Path("/usr/include/valgrind/callgrind.h").exists(),
    reason="needs valgrind with its headers (callgrind.h) and a C compiler",
)


def test_parse_captured_cache_simulation_profile() -> None:
    text = (DATA / "gemm_c_n32_cachesim_wb_ll16k.out").read_text()
    totals = parse_totals(text)
    # the summary line omits the trailing zero (DLdmw)
    assert totals["Ir"] == 149121 and totals["DLmr"] == 345 and totals["DLdmr"] == 211
    assert totals["DLdmw"] == 0
    assert words_moved(totals, itemsize=8) == (345 + 0 + 211 + 0) * 64 / 8


def test_parse_errors() -> None:
    with pytest.raises(BackendError, match="no events"):
        parse_totals("positions: line\n")
    with pytest.raises(BackendError, match="DLdmr"):
        words_moved({"DLmr": 1, "DLmw": 0}, 8)


def test_cache_args() -> None:
    assert cache_args(4096, 8) == ["--LL=32768,8,64", "--D1=4096,8,64", "--I1=32768,8,64"]
    for bad in (3000, 256):
        with pytest.raises(ValueError, match="power of two"):
            cache_args(bad, 8)


@pytest.mark.valgrind
@needs_valgrind
def test_c_gemm_traffic_is_above_the_bound_and_streams_b() -> None:
    fits = measure("gemm-c", 32, 4096)  # all three matrices (3072 words) fit in 4096
    assert fits.bound_words == 3 * 32 * 32
    # initialized just before the kernel, A, B and C are still cached: a warm start may save
    # up to M words, and up to M dirty words stay unflushed
    assert fits.bound_words - 2 * 4096 <= fits.measured_words < fits.bound_words
    big = measure("gemm-c", 96, 1024)  # B (9216 words) is streamed once per row i
    assert big.measured_words >= big.bound_words
    assert big.measured_words >= 96**3 * 0.9  # i-k-j: n^3 words of B, the untiled cost
    points = [fits, big]
    assert "| gemm-c | matmul | 96 | 1024 |" in markdown(points)


@pytest.mark.valgrind
@pytest.mark.slow
@needs_valgrind
def test_python_region_toggle_and_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["bound", "matmul", "--set", "i=64", "--set", "j=64", "--set", "k=64",
               "-M", "1024", "--measure", "gemm=64", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| gemm | matmul | 64 | 1024 |" in result.output
    assert (tmp_path / "traffic.png").read_bytes()[:4] == b"\x89PNG"
    row = next(ln for ln in result.output.splitlines() if ln.startswith("| gemm | matmul"))
    ratio = float(row.split("|")[7])
    # only the BLAS call is collected: a tiled GEMM within a small factor of the bound, far
    # below the interpreter start (tens of millions of words)
    assert 1.0 <= ratio < 50


def test_every_target_is_a_registered_app_and_plot(tmp_path: Path) -> None:
    from hpcprof.apps import APPS

    assert set(TARGETS) <= set(APPS)
    for t in TARGETS.values():
        assert t.nest(4).iterations > 0
    from hpcprof.analysis.traffic import TrafficPoint

    pts = [TrafficPoint(app="gemm-c", nest="matmul", size=s, memory=1024, precision="float64",
                        measured_words=2.0 * s**3, bound_words=float(s**3), tiled_words=1,
                        tile=(("i", 1),)) for s in (32, 64)]  # fmt: skip
    plot(pts, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(find_compiler() is None, reason="needs a C compiler")
def test_one_region_shim_serves_counting_and_traffic() -> None:
    import ctypes

    from hpcprof.analysis.traffic import toggle_library
    from hpcprof.run.build import build_marker

    lib = ctypes.CDLL(str(build_marker()))
    for symbol in ("hpcprof_enter", "hpcprof_leave", "hpcprof_region_start", "hpcprof_toggle"):
        assert hasattr(lib, symbol)  # the callgrind backend's markers and the toggle
    if Path("/usr/include/valgrind/callgrind.h").exists():
        assert lib.hpcprof_toggle_available() == 1
        assert toggle_library() == build_marker()  # the same cached build, not a second one
    else:
        assert lib.hpcprof_toggle_available() == 0
        with pytest.raises(BackendError, match=r"callgrind\.h"):
            toggle_library()
