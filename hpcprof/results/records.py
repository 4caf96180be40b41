"""Typed, immutable, schema-versioned records of one profiling run.

Records stay as frozen dataclasses inside the library; they become a tidy pandas table
(one row per app x precision x repetition x metric) only in :mod:`hpcprof.results.store`.
Missing values are ``None`` with a :class:`SampleStatus` saying why, never 0, and every
sample names the backend (or method: ``analytic``, ``app``) that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

SCHEMA_VERSION = 1


class Precision(Enum):
    """Working precision of a built-in app. External apps run at their own (``NATIVE``)."""

    FLOAT64 = "float64"
    FLOAT32 = "float32"
    NATIVE = "native"

    @property
    def bits(self) -> int | None:
        return {"float64": 64, "float32": 32}.get(self.value)

    @property
    def itemsize(self) -> int | None:
        bits = self.bits
        return None if bits is None else bits // 8


class Metric(Enum):
    """What a sample measures; the unit is part of the definition."""

    WALL_S = "wall_s"  # wall time of the whole process, seconds
    CPU_S = "cpu_s"  # user+system time of the process and its children, seconds
    KERNEL_S = "kernel_s"  # time of the measured region as reported by the app
    FP64_FLOP = "fp64_flop"  # executed double-precision floating-point operations
    FP32_FLOP = "fp32_flop"  # executed single-precision floating-point operations
    FP16_FLOP = "fp16_flop"  # executed half-precision operations (GPU counters)
    FP_FLOP = "fp_flop"  # all FP operations, where widths cannot be told apart
    # The part of FP64/FP32/FP16_FLOP done on GPU tensor cores (DMMA; TF32; FP16/BF16 HMMA).
    # NOT_SUPPORTED where the profiler has no such metric on this GPU.
    FP64_TENSOR_FLOP = "fp64_tensor_flop"
    FP32_TENSOR_FLOP = "fp32_tensor_flop"
    FP16_TENSOR_FLOP = "fp16_tensor_flop"
    MEM_BYTES = "mem_bytes"  # bytes moved to/from main memory
    ANALYTIC_FLOP = "analytic_flop"  # FLOPs the algorithm needs (model, not a count)
    ANALYTIC_BYTES = "analytic_bytes"  # compulsory bytes the algorithm moves (model)
    CHECK_ERROR = "check_error"  # self-check error (residual or error vs float64)
    FOM = "fom"  # figure of merit of an external app, unit from the suite file
    MULTIPLEX = "multiplex"  # fraction of the run the counters were scheduled (0..1]
    # What a distributed app's ranks send and receive, counted by the app (caqr across ranks):
    # words of its precision and point-to-point messages; per rank (process "rank N") and summed.
    WORDS_SENT = "words_sent"
    WORDS_RECEIVED = "words_received"
    MESSAGES_SENT = "messages_sent"
    MESSAGES_RECEIVED = "messages_received"


class SampleStatus(Enum):
    """Why a sample has (or lacks) a value."""

    OK = "ok"
    NOT_SEPARABLE = "not_separable"  # the CPU counts FP64 and FP32 together
    NOT_SUPPORTED = "not_supported"  # the event does not exist on this CPU/kernel
    NOT_COUNTED = "not_counted"  # the event exists but was never scheduled
    MISSING = "missing"  # the tool produced no value for it
    NOTHING_COUNTED = "nothing_counted"  # the app ran, but the tool collected no instructions


class RunStatus(Enum):
    """Outcome of one process run."""

    OK = "ok"
    FAILED = "failed"  # nonzero exit status
    TIMEOUT = "timeout"  # killed after the time limit
    CHECK_FAILED = "check_failed"  # ran, but the self-check error is over tolerance
    LAUNCH_ERROR = "launch_error"  # could not start or build the program
    BACKEND_ERROR = "backend_error"  # the app ran, the counter tool's output was unusable


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One observed value.

    Args:
        metric: what is measured.
        value: the number, or None when ``status`` is not OK.
        backend: the backend or method that produced it (``timer``, ``perf``, ``likwid``,
            ``callgrind``, ``analytic``, ``app``).
        status: why the value is missing, if it is.
        unit: free-text unit for ``FOM`` samples; implied by the metric otherwise.
        region: marker region or measured function, when the tool reports one.
        coverage: fraction of the run the counter was active (perf multiplexing).
        process: the one process (``"<pid> <program>"``) this value belongs to, for the
            per-process rows of a run with several processes (MPI ranks, children); None
            for the value of the whole run, which is the sum over its processes.
    """

    metric: Metric
    value: float | None
    backend: str
    status: SampleStatus = SampleStatus.OK
    unit: str = ""
    region: str | None = None
    coverage: float | None = None
    process: str | None = None

    def __post_init__(self) -> None:
        if self.status is SampleStatus.OK and self.value is None:
            raise ValueError(f"sample {self.metric.value}: status ok needs a value")
        if self.status is not SampleStatus.OK and self.value is not None:
            raise ValueError(f"sample {self.metric.value}: status {self.status.value} has a value")

    @classmethod
    def missing(
        cls,
        metric: Metric,
        backend: str,
        status: SampleStatus = SampleStatus.MISSING,
        *,
        unit: str = "",
        region: str | None = None,
    ) -> Sample:
        """A sample with no value, saying why (``status``).

        Args:
            metric: what was to be measured.
            backend: the backend or method that tried.
            status: why there is no value (not OK).
            unit: free-text unit for ``FOM`` samples.
            region: marker region or measured function, when the tool reports one.

        Raises:
            ValueError: ``status`` is OK.
        """
        return cls(metric=metric, value=None, backend=backend, status=status, unit=unit,
                   region=region)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One repetition of one app at one precision and size."""

    app: str
    precision: Precision
    size: int | None
    preset: str | None
    repetition: int
    status: RunStatus
    backend: str
    returncode: int | None = None
    stderr_tail: str = ""
    samples: tuple[Sample, ...] = ()
    node: str | None = None  # host name of the machine the run used (cluster runs)
    schema_version: int = SCHEMA_VERSION

    def value(self, metric: Metric) -> float | None:
        """First OK whole-run value for ``metric`` (per-process rows skipped), or None."""
        for s in self.samples:
            if s.metric is metric and s.status is SampleStatus.OK and s.process is None:
                return s.value
        return None


@dataclass(frozen=True, kw_only=True)
class HostInfo:
    """Facts about the machine a run used, recorded once per run."""

    hostname: str
    cpu_model: str
    cpu_vendor: str
    cpu_family: int | None
    cpu_model_number: int | None
    logical_cpus: int
    allowed_cpus: tuple[int, ...]
    kernel: str
    python: str
    tool_versions: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
