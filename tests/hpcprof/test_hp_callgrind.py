"""callgrind backend: the C GEMM counts only its own precision, within 5% of 2 n^3."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcprof.backends.callgrind import CallgrindBackend, parse_callgrind
from hpcprof.backends.x86 import classify
from hpcprof.results.records import Metric, Precision, RunStatus, SampleStatus
from hpcprof.results.report import summarize
from hpcprof.results.store import to_frame
from hpcprof.run.build import find_compiler
from hpcprof.run.config import RunConfig
from hpcprof.run.host import collect_host
from hpcprof.run.runner import builtin_tasks, measure
from hpcprof.run.tasks import Task

needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("objdump") is None or find_compiler() is None,
    reason="callgrind test needs valgrind, objdump (binutils) and a C compiler on PATH",
)


@pytest.mark.valgrind
@needs_valgrind
@pytest.mark.parametrize("precision", [Precision.FLOAT64, Precision.FLOAT32], ids=lambda p: p.value)
def test_c_gemm_counts_one_precision_within_5_percent(precision: Precision) -> None:
    n = 48
    config = RunConfig(apps=("gemm-c",), precisions=(precision,), sizes=(("gemm-c", n),))
    (task,) = builtin_tasks(config)
    m = measure(task, CallgrindBackend(collect_host()), 0, None)
    assert m.status is RunStatus.OK, m.stderr_tail
    analytic = 2.0 * n**3
    own, other = (
        (Metric.FP64_FLOP, Metric.FP32_FLOP)
        if precision is Precision.FLOAT64
        else (Metric.FP32_FLOP, Metric.FP64_FLOP)
    )
    counted = m.value(own)
    assert counted is not None and abs(counted - analytic) / analytic < 0.05
    assert m.value(other) == 0.0
    assert all(s.backend in ("callgrind", "analytic", "app") for s in m.samples)


CALLGRIND_SAMPLE = """# callgrind format
version: 1
positions: instr line
events: Ir
ob=/bin/app
fl=???
fn=main
cfn=kernel
calls=1 0x14f0 0
0x13c9 0 999
fn=kernel
0x14f0 0 1
+4 0 3
* 0 2
0x14f0 0 5
"""


def test_parse_callgrind_skips_call_costs_and_sums_positions() -> None:
    counts = parse_callgrind(CALLGRIND_SAMPLE)
    assert counts == {"/bin/app": {0x14F0: 6, 0x14F4: 5}}


def test_parse_callgrind_real_profile(tmp_path: Path) -> None:
    """Also read a profile produced here, when valgrind is installed."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed: no live profile to parse")
    import subprocess

    out = tmp_path / "cg.out"
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--compress-strings=no",
         "--compress-pos=no", f"--callgrind-out-file={out}", "/bin/true"],
        capture_output=True, check=True,
    )  # fmt: skip
    counts = parse_callgrind(out.read_text())
    assert sum(sum(c.values()) for c in counts.values()) > 0


@pytest.mark.parametrize(
    ("mnemonic", "operands", "expected"),
    [
        ("addsd", "%xmm1,%xmm0", (Precision.FLOAT64, 1)),
        ("mulps", "%xmm1,%xmm0", (Precision.FLOAT32, 4)),
        ("vaddpd", "%ymm1,%ymm2,%ymm3", (Precision.FLOAT64, 4)),
        ("vfmadd231ps", "(%rsi,%rax,4),%ymm0,%ymm12", (Precision.FLOAT32, 16)),
        ("vfmadd231pd", "%zmm1,%zmm2,%zmm3{%k1}", (Precision.FLOAT64, 16)),
        ("vfnmadd213sd", "%xmm1,%xmm2,%xmm3", (Precision.FLOAT64, 2)),
        ("sqrtsd", "%xmm1,%xmm0", (Precision.FLOAT64, 1)),
        ("vrcp14ps", "%zmm1,%zmm2", (Precision.FLOAT32, 16)),
        ("addsubpd", "%xmm1,%xmm0", (Precision.FLOAT64, 2)),
        # Intel FP_ARITH: DPP counts twice per element, like FMA
        ("dppd", "$0x31,%xmm1,%xmm0", (Precision.FLOAT64, 4)),
        ("dpps", "$0xff,%xmm1,%xmm0", (Precision.FLOAT32, 8)),
        ("vdpps", "$0xff,%ymm1,%ymm2,%ymm3", (Precision.FLOAT32, 16)),
        ("vdppd", "$0x31,%xmm1,%xmm2,%xmm3", (Precision.FLOAT64, 4)),
        ("vdpbf16ps", "%zmm1,%zmm2,%zmm3", None),
        ("vpdpbusd", "%zmm1,%zmm2,%zmm3", None),
        ("fadd", "%st(1),%st", None),  # x87: not counted
        ("movsd", "(%rax),%xmm0", None),
        ("vpaddd", "%ymm1,%ymm2,%ymm3", None),
        ("vpminsd", "%ymm1,%ymm2,%ymm3", None),
        ("cvtsi2sd", "%eax,%xmm0", None),
        ("ucomisd", "%xmm1,%xmm0", None),
        ("addq", "$0x8,%rax", None),
    ],
)
def test_classify(mnemonic: str, operands: str, expected: tuple[Precision, int] | None) -> None:
    assert classify(mnemonic, operands) == expected


@given(
    op=st.sampled_from(["add", "sub", "mul", "div", "min", "max"]),
    suffix=st.sampled_from(["ps", "pd"]),
    reg=st.sampled_from([("xmm", 128), ("ymm", 256), ("zmm", 512)]),
    fma=st.booleans(),
)
def test_packed_flops_are_lanes_times_fma_factor(
    op: str, suffix: str, reg: tuple[str, int], fma: bool
) -> None:
    name = f"vfmadd231{suffix}" if fma else f"v{op}{suffix}"
    got = classify(name, f"%{reg[0]}1,%{reg[0]}2,%{reg[0]}3")
    lanes = reg[1] // (64 if suffix == "pd" else 32)
    assert got is not None and got[1] == lanes * (2 if fma else 1)
    assert got[0] is (Precision.FLOAT64 if suffix == "pd" else Precision.FLOAT32)


def _gemm_task(tmp_path: Path, script: str | None, n: int, region: str = "hpcprof_kernel") -> Task:
    """gemm-c (float64) started directly or through a shell ``script`` ("$@" = the program)."""
    from hpcprof.run.build import build

    binary = str(build("gemm.c", Precision.FLOAT64))
    prefix: list[str] = []
    if script is not None:
        path = tmp_path / "launch.sh"
        path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
        path.chmod(0o755)
        prefix = [str(path)]
    return Task(
        app="gemm-c",
        precision=Precision.FLOAT64,
        size=n,
        preset=None,
        command=lambda: [*prefix, binary, str(n)],
        region=region,
    )


@pytest.mark.valgrind
@needs_valgrind
def test_exec_wrapper_is_followed(tmp_path: Path) -> None:
    n = 32
    m = measure(_gemm_task(tmp_path, 'exec "$@"', n), CallgrindBackend(collect_host()), 0, None)
    # before: the exec'd program wrote an empty profile -> "no instruction positions"
    assert m.status is RunStatus.OK, m.stderr_tail
    counted = m.value(Metric.FP64_FLOP)
    assert counted is not None and abs(counted - 2.0 * n**3) / (2.0 * n**3) < 0.05


@pytest.mark.valgrind
@needs_valgrind
def test_two_ranks_are_summed_and_kept_per_process(tmp_path: Path) -> None:
    n = 32
    task = _gemm_task(tmp_path, '"$@" &\n"$@" &\nwait', n)  # a launcher with two ranks
    m = measure(task, CallgrindBackend(collect_host()), 0, None)
    assert m.status is RunStatus.OK, m.stderr_tail
    total = m.value(Metric.FP64_FLOP)
    ranks = [s for s in m.samples if s.metric is Metric.FP64_FLOP and s.process is not None]
    labels = [str(s.process).split() for s in ranks]
    assert len({pid for pid, _ in labels}) == 2  # "<pid> <program>", one per rank
    assert all(program.startswith("gemm-float64") for _, program in labels)
    per = [s.value for s in ranks]
    # before: only the launcher shell was profiled, 0 FLOPs with status ok
    assert total is not None and total == sum(v for v in per if v is not None)
    assert all(v is not None and abs(v - 2.0 * n**3) / (2.0 * n**3) < 0.05 for v in per)
    frame = to_frame([m], "r")
    assert frame["process"].notna().sum() == 4  # FP64 and FP32 per rank
    (row,) = summarize(frame)
    assert row.fp64_gflop == pytest.approx(total / 1e9)


@pytest.mark.valgrind
@needs_valgrind
def test_region_that_never_ran_is_nothing_counted(tmp_path: Path) -> None:
    task = _gemm_task(tmp_path, None, 16, region="no_such_function")
    m = measure(task, CallgrindBackend(collect_host()), 0, None)
    fp64 = next(s for s in m.samples if s.metric is Metric.FP64_FLOP)
    # before: value 0.0, status ok
    assert fp64.value is None and fp64.status is SampleStatus.NOTHING_COUNTED
    (row,) = summarize(to_frame([m], "r"))
    assert row.fp64_share is None and "nothing_counted" in row.note


DOT_PRODUCTS = r"""
#include <stdlib.h>
#include <stdio.h>
#include <immintrin.h>
__attribute__((noinline)) static double kernel(long n) {
    __m128d a = _mm_set_pd(1.0, 2.0), b = _mm_set_pd(3.0, 4.0);
    __m128 c = _mm_set_ps(1.0f, 2.0f, 3.0f, 4.0f), d = _mm_set_ps(5.0f, 6.0f, 7.0f, 8.0f);
    for (long i = 0; i < n; i++) {
        __asm__ volatile("dppd $0x31, %1, %0" : "+x"(a) : "x"(b));
        __asm__ volatile("dpps $0xff, %1, %0" : "+x"(c) : "x"(d));
    }
    return _mm_cvtsd_f64(a) + _mm_cvtss_f32(c);
}
int main(int argc, char **argv) { printf("%g\n", kernel(atol(argv[1]))); return 0; }
"""


@pytest.mark.valgrind
@needs_valgrind
def test_dppd_dpps_count_like_intel_fp_arith(tmp_path: Path) -> None:
    import subprocess

    src, exe = tmp_path / "dot.c", tmp_path / "dot"
    src.write_text(DOT_PRODUCTS, encoding="utf-8")
    subprocess.run([str(find_compiler()), "-O1", "-msse4.1", "-o", str(exe), str(src)],
                   check=True, capture_output=True)  # fmt: skip
    n = 1000
    task = Task(app="dot", precision=Precision.NATIVE, size=n, preset=None,
                command=lambda: [str(exe), str(n)], region="kernel")  # fmt: skip
    m = measure(task, CallgrindBackend(collect_host()), 0, None)
    assert m.status is RunStatus.OK, m.stderr_tail
    # dppd: 2 lanes x 2 (multiply, add); dpps: 4 lanes x 2; before: both 0.
    # The one extra FP64 FLOP is the addsd of the return value.
    assert m.value(Metric.FP64_FLOP) == 4 * n + 1
    assert m.value(Metric.FP32_FLOP) == 8 * n


@pytest.mark.valgrind
@needs_valgrind
def test_python_kernel_counts_only_its_region() -> None:
    from hpcprof.apps.stream import SWEEPS

    n = 4000
    config = RunConfig(apps=("triad",), precisions=(Precision.FLOAT32,), sizes=(("triad", n),))
    (task,) = builtin_tasks(config)
    m = measure(task, CallgrindBackend(collect_host()), 0, None)
    assert m.status is RunStatus.OK, m.stderr_tail
    # exactly the triad's 2 FLOPs per element per sweep; before: the interpreter, NumPy's
    # set-up and the float64 self-check were counted too (a 26% FP64 share)
    assert m.value(Metric.FP32_FLOP) == 2 * n * SWEEPS
    assert m.value(Metric.FP64_FLOP) == 0.0
    fp32 = next(s for s in m.samples if s.metric is Metric.FP32_FLOP)
    assert fp32.region == "hpcprof_kernel"
