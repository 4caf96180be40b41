"""Classify x86-64 instructions (AT&T syntax, as ``objdump -d`` prints them) by FP work.

Counted, following the instruction list of Intel's ``FP_ARITH_INST_RETIRED`` events:
ADD, SUB, MUL, DIV, MIN, MAX, SQRT, RCP, RSQRT, HADD/HSUB/ADDSUB, and with 2 FLOPs per
element the FMA family and the dot products DPPS/DPPD (Intel: "counts twice for DPP and
FM(N)ADD/SUB"), in SSE, AVX and AVX-512 encodings. The DPP immediate mask is not read: like
the hardware event, all elements of the register count. Scalar ``ss``/``sd`` forms are one
element; packed ``ps``/``pd`` forms count the elements of the widest register named
(xmm 128, ymm 256, zmm 512 bits). Masked AVX-512 forms count the full width (the mask
is not known statically). Not counted: x87 (``fadd``...), compares, conversions, half
precision, and integer SIMD.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from hpcprof.errors import BackendError
from hpcprof.results.records import Precision

_ARITH = r"(?:add|sub|mul|div|min|max|sqrt|rcp|rsqrt|rcp14|rsqrt14|hadd|hsub|addsub)"
_FMA = r"(?:f(?:n?m(?:add|sub)|maddsub|msubadd)(?:132|213|231)?)"
_DOT = r"(?:dp)"  # dpps/dppd/vdpps/vdppd: multiply, then add, per element
_PREFIXES = r"(?:(?:data16|addr32|rex(?:\.\w+)?|lock|notrack|bnd|\{\w+\})\s+)*"
FP_LINE = re.compile(
    rf"^\s*(?P<addr>[0-9a-f]+):\s+{_PREFIXES}"
    rf"(?P<mn>v?(?P<op>{_FMA}|{_DOT}|{_ARITH})(?P<suf>ss|sd|ps|pd))(?:\s+(?P<ops>[^\n]*))?$",
    re.M,
)
_WIDTH = (("zmm", 512), ("ymm", 256), ("xmm", 128))


def classify(mnemonic: str, operands: str = "") -> tuple[Precision, int] | None:
    """(precision, FLOPs per execution) of one instruction, or None if it is not FP math.

    >>> classify("vfmadd231pd", "%ymm1,%ymm2,%ymm3")
    (<Precision.FLOAT64: 'float64'>, 8)
    """
    m = FP_LINE.match(f"0: {mnemonic} {operands}".rstrip())
    if m is None:
        return None
    return _flops(m["op"], m["suf"], m["ops"] or "")


def _flops(op: str, suffix: str, operands: str) -> tuple[Precision, int]:
    precision = Precision.FLOAT64 if suffix[1] == "d" else Precision.FLOAT32
    if suffix[0] == "s":
        elements = 1
    else:
        bits = next((w for reg, w in _WIDTH if f"%{reg}" in operands), 128)
        elements = bits // (64 if precision is Precision.FLOAT64 else 32)
    per = 2 if op.startswith("f") or op == "dp" else 1
    return precision, elements * per


def scan_disassembly(text: str) -> Iterator[tuple[int, Precision, int]]:
    """(address, precision, FLOPs) for every FP arithmetic instruction in ``objdump -d`` text."""
    for m in FP_LINE.finditer(text):
        precision, flops = _flops(m["op"], m["suf"], m["ops"] or "")
        yield int(m["addr"], 16), precision, flops


def disassemble(path: Path, objdump: str = "objdump") -> str:
    """``objdump -d -w --no-show-raw-insn`` text of an object file.

    Raises:
        BackendError: objdump is missing or fails on the file.
    """
    try:
        proc = subprocess.run(
            [objdump, "-d", "-w", "--no-show-raw-insn", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"objdump failed on {path}: {exc}") from exc
    if proc.returncode != 0:
        raise BackendError(f"objdump failed on {path}: {proc.stderr.strip()[:200]}")
    return proc.stdout
