"""Host metadata (CPU, cores, kernel, tool versions), collected once per run on request."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from hpcprof.results.records import HostInfo

_TOOLS: dict[str, list[str]] = {
    "cc": ["cc", "--version"],
    "valgrind": ["valgrind", "--version"],
    "objdump": ["objdump", "--version"],
    "perf": ["perf", "--version"],
    "likwid-perfctr": ["likwid-perfctr", "-V"],
}
_PACKAGES = ("numpy", "torch", "pandas")


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def tool_version(cmd: list[str]) -> str | None:
    """First non-empty output line of a ``--version`` call, or None when not installed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return re.sub(r"\s+", " ", text.splitlines()[0]) if text else None


def collect_host() -> HostInfo:
    """Describe this machine (reads /proc/cpuinfo, runs ``--version`` of the tools)."""
    info = _cpuinfo()
    versions: dict[str, str] = {"python": platform.python_version()}
    for name, cmd in _TOOLS.items():
        if (v := tool_version(cmd)) is not None:
            versions[name] = v
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    try:
        allowed = tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        allowed = tuple(range(os.cpu_count() or 1))
    return HostInfo(
        hostname=socket.gethostname(),
        cpu_model=info.get("model name", platform.processor() or "unknown"),
        cpu_vendor=info.get("vendor_id", "unknown"),
        cpu_family=_int(info.get("cpu family")),
        cpu_model_number=_int(info.get("model")),
        logical_cpus=os.cpu_count() or 1,
        allowed_cpus=allowed,
        kernel=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        tool_versions=versions,
    )
