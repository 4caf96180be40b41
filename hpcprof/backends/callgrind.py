"""Software count of executed FP64/FP32 operations: callgrind execution counts x disassembly.

``valgrind --tool=callgrind --dump-instr=yes`` records how often every instruction ran,
per object file (program and shared libraries alike, so NumPy's BLAS is counted). Each
object is disassembled once with ``objdump -d`` and its FP arithmetic instructions are
classified (:mod:`hpcprof.backends.x86`); FLOPs = sum of executions x FLOPs per
instruction. Works where no hardware counters are exposed (VMs, CI).

Limits: valgrind runs programs 20-100x slower, so use small sizes; valgrind hides AVX-512
from the program (CPUID), so libraries pick AVX2 or SSE code paths and the counted
instruction mix can differ from a native run on an AVX-512 machine; x87 arithmetic is not
counted. Only the measured region is counted, so interpreter start-up, set-up and the
float64 self-check are excluded: for C apps the app's measured function
(``--toggle-collect``); for Python kernels the code between two marker calls that
:class:`~hpcprof.apps.base.Region` makes (``hp_marker.c``, loaded through ctypes;
``--zero-before``/``--dump-before`` on them, and only the dumps at a region's end are read).

Child processes are followed (``--trace-children=yes``): an MPI launcher's ranks and the
programs a wrapper script starts or execs are counted, each process in its own profile.
The run's FLOPs are the sum over processes; with several processes a row per process is
kept as well (``Sample.process``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hpcprof.backends.base import Availability, Backend, Job, tool_output
from hpcprof.backends.x86 import disassemble, scan_disassembly
from hpcprof.errors import BackendError, ParseError
from hpcprof.results.records import Metric, Precision, Sample, SampleStatus
from hpcprof.run.build import build_marker, cache_dir

_COST = re.compile(r"^[0-9+\-*]")
_NAMED = re.compile(r"^\((?P<id>\d+)\)(?:\s+(?P<name>.*))?$")


def parse_callgrind(text: str) -> dict[str, dict[int, int]]:
    """Instruction execution counts per object: ``{object path: {address: count}}``.

    Reads the callgrind profile format with ``positions: instr`` (optionally ``instr
    line``), absolute or relative (``+n``/``-n``/``*``) positions, and compressed or plain
    names. The cost line after ``calls=`` is inclusive call cost and is skipped.

    Raises:
        ParseError: the text is not a callgrind profile with instruction positions.
    """
    positions: list[str] | None = None
    names: dict[str, str] = {}
    counts: dict[str, dict[int, int]] = {}
    obj = "???"
    last_addr = 0
    skip_next = False
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("positions:"):
            positions = line.split(":", 1)[1].split()
            continue
        if _COST.match(line):
            if positions is None:
                raise ParseError("callgrind output has cost lines before 'positions:'")
            fields = line.split()
            if skip_next:
                skip_next = False
                continue
            tok = fields[0]
            if tok == "*":
                addr = last_addr
            elif tok[0] in "+-":
                addr = last_addr + int(tok, 0)
            else:
                addr = int(tok, 16) if tok.startswith("0x") else int(tok)
            last_addr = addr
            if len(fields) > len(positions):
                n = int(fields[len(positions)])
                per_obj = counts.setdefault(obj, {})
                per_obj[addr] = per_obj.get(addr, 0) + n
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "ob":
            obj = _name(value, names)
        elif key == "calls":
            skip_next = True
    if positions is None or "instr" not in positions:
        raise ParseError("callgrind output has no instruction positions (--dump-instr=yes)")
    return counts


def _name(value: str, names: dict[str, str]) -> str:
    m = _NAMED.match(value.strip())
    if m is None:
        return value.strip()
    if m["name"] is not None:
        names[m["id"]] = m["name"]
        return m["name"]
    return names.get(m["id"], value.strip())


def fp_table(path: Path) -> dict[int, tuple[Precision, int]]:
    """Address -> (precision, FLOPs) of the FP instructions of an object, cached on disk.

    The cache is keyed by the file's path, size and mtime.
    """
    st = path.stat()
    key = re.sub(r"[^A-Za-z0-9_.-]", "_", str(path.resolve()))[-120:]
    cache = cache_dir() / "fp-tables" / f"{key}-{st.st_size}-{st.st_mtime_ns}.json"
    if cache.exists():
        raw = json.loads(cache.read_text(encoding="utf-8"))
        return {int(a): (Precision(p), int(f)) for a, p, f in raw}
    table = {a: (p, f) for a, p, f in scan_disassembly(disassemble(path))}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps([[a, p.value, f] for a, (p, f) in table.items()]), encoding="utf-8")
    os.replace(tmp, cache)
    return table


def count_flops(counts: dict[str, dict[int, int]]) -> dict[Precision, int]:
    """Sum executions x FLOPs over all objects that exist on disk."""
    totals = {Precision.FLOAT64: 0, Precision.FLOAT32: 0}
    for obj, per_addr in counts.items():
        path = Path(obj)
        if not path.is_file():
            continue  # [vdso], ???, deleted files
        table = fp_table(path)
        for addr, n in per_addr.items():
            hit = table.get(addr)
            if hit is not None:
                totals[hit[0]] += n * hit[1]
    return totals


class CallgrindBackend(Backend):
    """valgrind/callgrind instruction counts classified by objdump."""

    name = "callgrind"
    summary = "software FP64/FP32 count: valgrind callgrind x objdump (slow; small sizes)"

    def available(self) -> Availability:
        probe = tool_output(["valgrind", "--version"])
        if probe is None:
            return Availability(ok=False, detail="valgrind not installed")
        if tool_output(["objdump", "--version"]) is None:
            return Availability(ok=False, detail="objdump not installed (binutils)")
        return Availability(ok=True, detail=probe[1].strip())

    def wrap(self, cmd: Sequence[str], job: Job) -> list[str]:
        args = [
            "valgrind",
            "--tool=callgrind",
            # follow fork and exec: MPI launchers, wrapper scripts and their ranks; each
            # process writes its own profile (%p)
            "--trace-children=yes",
            "--dump-instr=yes",
            "--compress-strings=no",
            "--compress-pos=no",
            f"--callgrind-out-file={job.scratch / 'callgrind.out.%p'}",
        ]
        if job.python_kernel:
            # counts between the markers only, one dump per region (see hp_marker.c)
            args += [f"--zero-before={REGION_START}", f"--dump-before={REGION_STOP}"]
        elif job.region is not None:
            args.append(f"--toggle-collect={job.region}")
        return [*args, *cmd]

    def environment(self, job: Job) -> dict[str, str]:
        """The marker library for Python kernels (built on first use).

        Raises:
            BuildError: the marker library cannot be compiled (no C compiler).
        """
        if not job.python_kernel:
            return {}
        return {"HPCPROF_CALLGRIND_MARKER": str(build_marker())}

    def collect(self, job: Job, stdout: str, stderr: str) -> tuple[Sample, ...]:
        files = sorted(job.scratch.glob("callgrind.out.*"))
        if not files:
            raise BackendError("callgrind wrote no profile")
        profiles = [p for f in files if (p := read_profile(f)) is not None]
        if not profiles:
            raise BackendError(
                f"callgrind wrote only empty profiles ({len(files)}): a process was killed "
                "or replaced itself before valgrind could write its counts"
            )
        if job.python_kernel:
            # only the dumps at the end of a measured region; the dump at exit holds what
            # ran after the last region (the self-check), start-up was zeroed
            regions = [p for p in profiles if p.trigger == f"--dump-before={REGION_STOP}"]
            return samples_from_profiles(
                regions or [replace(profiles[0], counts={})],
                region=PYTHON_REGION,
                backend=self.name,
            )
        return samples_from_profiles(profiles, region=job.region, backend=self.name)


REGION_START = "hpcprof_region_start"  # marker functions of hp_marker.c
REGION_STOP = "hpcprof_region_stop"
PYTHON_REGION = "hpcprof_kernel"  # the name Python kernels give their Region


@dataclass(frozen=True, kw_only=True)
class Profile:
    """The counts of one dump of one process: pid, command line, what triggered the dump
    (``Program termination``, ``--dump-before=...``) and executions per address."""

    pid: int | None
    command: str
    counts: dict[str, dict[int, int]]
    trigger: str = ""

    @property
    def label(self) -> str:
        program = Path(self.command.split()[0]).name if self.command.split() else "?"
        return f"{self.pid} {program}"

    @property
    def instructions(self) -> int:
        return sum(sum(per.values()) for per in self.counts.values())


def read_profile(path: Path) -> Profile | None:
    """One process's profile, or None for an empty file (a process that exec'd or died).

    Raises:
        ParseError: the file is not a callgrind profile with instruction positions.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return None
    pid = re.search(r"^pid:\s*(\d+)", text, re.M)
    cmd = re.search(r"^cmd:\s*(.*?)\s*$", text, re.M)
    trigger = re.search(r"^desc: Trigger:\s*(.*?)\s*$", text, re.M)
    return Profile(
        pid=int(pid[1]) if pid else None,
        command=cmd[1] if cmd else "",
        counts=parse_callgrind(text),
        trigger=trigger[1] if trigger else "",
    )


def _per_process(profiles: Sequence[Profile]) -> list[Profile]:
    """One profile per process: the dumps of a process (one per region) added up."""
    merged: dict[tuple[int | None, str], dict[str, dict[int, int]]] = {}
    for p in profiles:
        counts = merged.setdefault((p.pid, p.command), {})
        for obj, per_addr in p.counts.items():
            target = counts.setdefault(obj, {})
            for addr, n in per_addr.items():
                target[addr] = target.get(addr, 0) + n
    return [Profile(pid=pid, command=cmd, counts=c) for (pid, cmd), c in merged.items()]


def samples_from_profiles(
    profiles: Sequence[Profile], *, region: str | None, backend: str = "callgrind"
) -> tuple[Sample, ...]:
    """FP64/FP32 FLOPs of the whole run (the sum over processes), then one row per process.

    Per-process rows are kept when more than one process collected instructions (MPI
    ranks, forked workers). A run in which no process collected a single instruction (the
    measured function never ran under valgrind) gives NOTHING_COUNTED, not 0.
    """
    ran = [p for p in _per_process(profiles) if p.instructions > 0]
    metrics = ((Metric.FP64_FLOP, Precision.FLOAT64), (Metric.FP32_FLOP, Precision.FLOAT32))
    if not ran:
        return tuple(
            Sample.missing(m, backend, SampleStatus.NOTHING_COUNTED, region=region)
            for m, _ in metrics
        )  # fmt: skip
    per = [(p, count_flops(p.counts)) for p in ran]
    out = [
        Sample(
            metric=m,
            value=float(sum(t[prec] for _, t in per)),
            backend=backend,
            region=region,
        )
        for m, prec in metrics
    ]
    if len(per) > 1:
        out += [
            Sample(metric=m, value=float(t[prec]), backend=backend, region=region,
                   process=p.label)
            for p, t in per
            for m, prec in metrics
        ]  # fmt: skip
    return tuple(out)
