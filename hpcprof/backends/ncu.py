"""Nsight Compute (``ncu``): executed FP64/FP32/FP16 instructions and DRAM bytes per kernel.

FLOPs per width are ``add + mul + 2 * fma`` of the ``sm__sass_thread_inst_executed_op_*``
metrics (``d`` FP64, ``f`` FP32, ``h`` FP16), as in Nsight Compute's own roofline section,
plus the tensor-core operations of that width (``sm__ops_path_tensor_src_*``: DMMA for
FP64, TF32 for FP32, FP16/BF16 HMMA for FP16; Nsight Compute counts an MMA of n MACs as
2n ops, so these are FLOPs). The tensor metrics exist only on some GPUs and Nsight Compute
versions (FP64 tensor cores: A100 and later), so the backend asks ``ncu --query-metrics``
which ones this GPU has, requests only those, and records the tensor part of each width as
its own sample (NOT_SUPPORTED where the metric is not available).
Bytes are ``dram__bytes_read.sum + dram__bytes_write.sum``. Both parsers accept the
``--csv`` long table and the default text report (app output interleaved, thousands
separators, units scaled to Kbyte/Mbyte/Gbyte, kernel names with commas), and the
``smsp__`` spelling of the same counters. Summed over all profiled kernels.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from hpcprof.backends.base import Availability, Backend, Job, tool_output
from hpcprof.errors import BackendError, ParseError
from hpcprof.results.records import Metric, Sample, SampleStatus

_OPS = ("add", "mul", "fma")
_WIDTHS = {"d": Metric.FP64_FLOP, "f": Metric.FP32_FLOP, "h": Metric.FP16_FLOP}
FLOP_METRICS = tuple(
    f"sm__sass_thread_inst_executed_op_{w}{op}_pred_on.sum" for w in _WIDTHS for op in _OPS
)
BYTE_METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum")
METRICS = (*FLOP_METRICS, *BYTE_METRICS)
# Tensor-core ops per width (FLOPs); each metric's name says its source precision.
TENSOR_METRICS: Mapping[Metric, tuple[str, ...]] = MappingProxyType({
    Metric.FP64_TENSOR_FLOP: ("sm__ops_path_tensor_src_fp64.sum",),
    Metric.FP32_TENSOR_FLOP: ("sm__ops_path_tensor_src_tf32_dst_fp32.sum",),
    Metric.FP16_TENSOR_FLOP: (
        "sm__ops_path_tensor_src_fp16_dst_fp16.sum",
        "sm__ops_path_tensor_src_fp16_dst_fp32.sum",
        "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    ),
})  # fmt: skip
_TENSOR_OF = {
    Metric.FP64_FLOP: Metric.FP64_TENSOR_FLOP,
    Metric.FP32_FLOP: Metric.FP32_TENSOR_FLOP,
    Metric.FP16_FLOP: Metric.FP16_TENSOR_FLOP,
}

# SI prefixes as Nsight Compute prints them ("Kbyte" is 1e3 bytes); binary ones for safety.
_PREFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2.0**10, "Mi": 2.0**20,
           "Gi": 2.0**30, "Ti": 2.0**40}  # fmt: skip
_UNIT = re.compile(r"^(?P<prefix>|K|M|G|T|Ki|Mi|Gi|Ti)(?P<base>byte|inst|sector|cycle)$")
_TIME = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0}


@dataclass(frozen=True, kw_only=True)
class KernelMetrics:
    """Metrics of one profiled kernel launch, in base units (bytes, instructions, seconds)."""

    kernel: str
    values: Mapping[str, float]


def scale(value: str, unit: str) -> float | None:
    """A printed metric value in base units, or None when it is not a number.

    ``5,122,560,000`` reads as 5122560000; ``20.96`` with unit ``Mbyte`` as 20960000.0.
    Rates (units with ``/``) and unknown units are returned unscaled.
    """
    text = value.strip().replace(",", "")
    try:
        number = float(text)
    except ValueError:
        return None
    m = _UNIT.match(unit.strip())
    if m is not None:
        return number * _PREFIX[m["prefix"]]
    return number * _TIME.get(unit.strip(), 1.0)


def _canonical(metric: str) -> str:
    """``smsp__X`` and ``sm__X`` name the same sum; keep the ``sm__`` spelling."""
    return "sm__" + metric[len("smsp__") :] if metric.startswith("smsp__") else metric


def parse_ncu_csv(text: str) -> tuple[KernelMetrics, ...]:
    """Parse ``ncu --csv`` (long format: one row per kernel and metric).

    Lines before the header (app output, ``==PROF==``) and lines that are not quoted CSV
    rows are skipped.

    Raises:
        ParseError: no header with ``Kernel Name``, ``Metric Name`` and ``Metric Value``.
    """
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"ID",')), None)
    if start is None:
        raise ParseError('ncu csv: no header line starting with "ID"')
    rows = [ln for ln in lines[start:] if ln.startswith('"')]
    reader = csv.DictReader(rows)
    need = {"Kernel Name", "Metric Name", "Metric Value"}
    if not need <= set(reader.fieldnames or ()):
        raise ParseError(f"ncu csv: header lacks {sorted(need - set(reader.fieldnames or ()))}")
    kernels: dict[str, tuple[str, dict[str, float]]] = {}
    for row in reader:
        key = row.get("ID") or str(len(kernels))
        _, values = kernels.setdefault(key, (row["Kernel Name"], {}))
        value = scale(row["Metric Value"] or "", row.get("Metric Unit") or "")
        if value is not None:
            values[_canonical(row["Metric Name"])] = value
    return tuple(KernelMetrics(kernel=n, values=MappingProxyType(v)) for n, v in kernels.values())


_KERNEL_LINE = re.compile(
    r"^  (?P<name>\S.*?), (?:\d{4}-\w{3}-\d{1,2} [\d:]+, )?Context \d+, Stream \d+"
)
_ROW = re.compile(r"^ {4}(?P<name>\S+(?: \S+)*)\s{2,}(?:(?P<unit>\S+)\s{2,})?(?P<value>\S+)\s*$")


def parse_ncu_text(text: str) -> tuple[KernelMetrics, ...]:
    """Parse the default text report: ``  kernel(args), ..., Context N, Stream M`` headers,
    then ``Section:`` tables of ``name  unit  value`` rows. Rule text and app output are
    skipped.

    Raises:
        ParseError: no kernel header found.
    """
    kernels: list[tuple[str, dict[str, float]]] = []
    for line in text.splitlines():
        header = _KERNEL_LINE.match(line)
        if header is not None:
            kernels.append((header["name"], {}))
            continue
        if not kernels or line.startswith("    Section:") or line.lstrip().startswith("---"):
            continue
        row = _ROW.match(line)
        if row is None:
            continue
        value = scale(row["value"], row["unit"] or "")
        if value is not None:
            kernels[-1][1][_canonical(row["name"])] = value
    if not kernels:
        raise ParseError("ncu text: no kernel header ('<kernel>, ..., Context N, Stream M')")
    return tuple(KernelMetrics(kernel=n, values=MappingProxyType(v)) for n, v in kernels)


def parse_ncu(text: str) -> tuple[KernelMetrics, ...]:
    """Either format: CSV when a quoted ``"ID",`` header is present, text otherwise."""
    if any(ln.startswith('"ID",') for ln in text.splitlines()):
        return parse_ncu_csv(text)
    return parse_ncu_text(text)


def parse_query_metrics(text: str) -> frozenset[str]:
    """Base metric names (``sm__ops_path_tensor_src_fp64``) listed by ``ncu --query-metrics``.

    Every line whose first word looks like a metric name (``unit__counter``) counts; the
    device banner, column headings and descriptions are skipped.
    """
    names = set()
    for line in text.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if re.fullmatch(r"[a-z0-9]+__[a-z0-9_]+", word):
            names.add(word)
    return frozenset(names)


def totals(
    kernels: Iterable[KernelMetrics],
    backend: str = "ncu",
    *,
    tensor: frozenset[str] | None = None,
) -> tuple[Sample, ...]:
    """FP64/FP32/FP16 FLOPs (CUDA cores + tensor cores) and DRAM bytes summed over kernels.

    Args:
        kernels: parsed kernel metrics.
        backend: name recorded on the samples.
        tensor: the tensor metrics (full names) that were requested because this GPU has
            them; None when that could not be queried (tensor parts are then taken from
            whatever tensor metrics the report holds, and MISSING if none).

    A width whose CUDA-core metrics appear in no kernel is MISSING (None), never 0.
    """
    kernels = tuple(kernels)
    samples = []
    parts = {m: _tensor_part(kernels, m, names, tensor, backend)
             for m, names in TENSOR_METRICS.items()}  # fmt: skip
    for w, metric in _WIDTHS.items():
        names = [f"sm__sass_thread_inst_executed_op_{w}{op}_pred_on.sum" for op in _OPS]
        seen = [k.values[n] * (2 if n.endswith("fma_pred_on.sum") else 1)
                for k in kernels for n in names if n in k.values]  # fmt: skip
        on_tensor = parts[_TENSOR_OF[metric]].value or 0.0
        samples.append(_sample(metric, sum(seen) + on_tensor if seen else None, backend))
    samples.extend(parts.values())
    nbytes = [k.values[n] for k in kernels for n in BYTE_METRICS if n in k.values]
    samples.append(_sample(Metric.MEM_BYTES, sum(nbytes) if nbytes else None, backend))
    return tuple(samples)


def _tensor_part(
    kernels: Sequence[KernelMetrics],
    metric: Metric,
    names: Sequence[str],
    requested: frozenset[str] | None,
    backend: str,
) -> Sample:
    """Tensor-core FLOPs of one width; NOT_SUPPORTED when this GPU has none of its metrics."""
    wanted = [n for n in names if requested is None or n in requested]
    if requested is not None and not wanted:
        return Sample.missing(metric, backend, SampleStatus.NOT_SUPPORTED, unit="FLOP")
    seen = [k.values[n] for k in kernels for n in wanted if n in k.values]
    if not seen:
        return Sample.missing(metric, backend, unit="FLOP")
    return Sample(metric=metric, value=sum(seen), backend=backend, unit="FLOP")


def _sample(metric: Metric, value: float | None, backend: str) -> Sample:
    if value is None:
        return Sample.missing(metric, backend)
    return Sample(metric=metric, value=value, backend=backend)


class NcuBackend(Backend):
    """Runs the command under ``ncu --csv --metrics ...`` with every child process profiled."""

    name = "ncu"
    summary = "Nsight Compute: FP64/FP32/FP16 instructions and DRAM bytes per CUDA kernel"

    def available(self) -> Availability:
        probe = tool_output(["ncu", "--version"])
        if probe is None:
            return Availability(ok=False, detail="ncu (Nsight Compute) not installed")
        gpus = tool_output(["nvidia-smi", "-L"])
        if gpus is None or gpus[0] != 0 or "GPU" not in gpus[1]:
            return Availability(ok=False, detail="no NVIDIA GPU visible (nvidia-smi -L)")
        version = probe[1].strip().splitlines()[-1] if probe[1].strip() else "ncu"
        return Availability(ok=True, detail=f"{version}; counter access checked per run")

    def tensor_metrics(self) -> frozenset[str] | None:
        """The tensor metrics this GPU's ncu offers (full names), or None if not known.

        Asks ``ncu --query-metrics`` once per backend object (not at construction).
        """
        if not hasattr(self, "_tensor"):
            probe = tool_output(["ncu", "--query-metrics"], timeout=120.0)
            listed = parse_query_metrics(probe[1]) if probe is not None and probe[0] == 0 else None
            every = [n for names in TENSOR_METRICS.values() for n in names]
            self._tensor: frozenset[str] | None = (
                None if not listed else frozenset(n for n in every if n.rsplit(".", 1)[0] in listed)
            )
        return self._tensor

    def wrap(self, cmd: Sequence[str], job: Job) -> list[str]:
        tensor = self.tensor_metrics() or frozenset()
        return [
            "ncu",
            "--csv",
            "--target-processes",
            "all",
            "--metrics",
            ",".join([*METRICS, *sorted(tensor)]),
            "--log-file",
            str(job.scratch / "ncu.csv"),
            *cmd,
        ]

    def collect(self, job: Job, stdout: str, stderr: str) -> tuple[Sample, ...]:
        path = job.scratch / "ncu.csv"
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if "ERR_NVGPUCTRPERM" in text + stdout + stderr:
            raise BackendError(
                "ncu: no permission for GPU performance counters (ERR_NVGPUCTRPERM); "
                "run as root or set NVreg_RestrictProfilingToAdminUsers=0"
            )
        if not text.strip():
            raise BackendError("ncu wrote no report (did the app launch any CUDA kernel?)")
        return totals(parse_ncu(text), self.name, tensor=self.tensor_metrics())
