"""Which kernel runs: the compiled one (``torch.compile``) or the eager function.

Both give the same bits (:mod:`precision._kernel` holds the one function they run). A
compiled kernel is checked against the eager function once per process before its first
result is used.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from precision._kernel import Carrier, mix32, round_bits, round_tally
from precision._memory import empty_output
from precision.rounding import RoundingMode

KernelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_BACKENDS = ("auto", "compiled", "eager")
_state = threading.local()
_compiled: dict[tuple[str, RoundingMode, bool, str, bool], KernelFn] = {}
_compile_failed: set[str] = set()
_verified: set[tuple[str, RoundingMode, bool, str, bool]] = set()
_lock = threading.Lock()
#: Below this many elements the eager kernel is used in "auto" mode: a compiled call costs
#: about 80 us of dispatch, the eager one about 250 us plus 2 ns per element.
COMPILE_THRESHOLD = 1 << 12


def get_backend() -> str:
    """The kernel backend in force: ``auto`` (default), ``compiled`` or ``eager``.

    The default comes from the environment variable ``PRECISION_KERNEL``.
    """
    value = getattr(_state, "backend", None) or os.environ.get("PRECISION_KERNEL", "auto")
    if value not in _BACKENDS:
        raise ValueError(f"PRECISION_KERNEL={value!r}: must be one of {', '.join(_BACKENDS)}")
    return str(value)


class kernel_backend:
    """Context manager (thread-local) choosing the kernel backend.

    Args:
        name: ``auto`` (compiled for tensors of at least ``COMPILE_THRESHOLD`` elements when
            torch.compile works, else eager), ``compiled`` (always compiled; raises if it
            cannot compile) or ``eager``.
    """

    def __init__(self, name: str) -> None:
        if name not in _BACKENDS:
            raise ValueError(f"kernel backend {name!r}: must be one of {', '.join(_BACKENDS)}")
        self.name = name
        self._prev: str | None = None

    def __enter__(self) -> kernel_backend:
        self._prev = getattr(_state, "backend", None)
        _state.backend = self.name
        return self

    def __exit__(self, *exc: object) -> None:
        _state.backend = self._prev


@dataclass(frozen=True)
class Spec:
    """Which kernel: its carrier, rounding mode, whether the format has -0
    (:func:`~precision._kernel.round_bits`'s ``signed_zero``) and whether it also counts
    (:func:`~precision._kernel.round_tally`). Each is a compile-time constant."""

    carrier: Carrier
    mode: RoundingMode
    signed_zero: bool = True
    tally: bool = False

    def cache_key(self, device_type: str) -> tuple[str, RoundingMode, bool, str, bool]:
        """The key of this kernel compiled for ``device_type``."""
        return (self.carrier.name, self.mode, self.signed_zero, device_type, self.tally)


def _make(spec: Spec) -> KernelFn:
    # The compiled graph stores straight into ``out`` (which may be ``b`` itself).
    def kernel(
        b: torch.Tensor, out: torch.Tensor, p: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor:
        return _eager(spec, b, out, p, key)

    # One code object per kernel: torch.compile keeps its cache on the code object, and a
    # shared one would see the carrier constants change between calls and turn them into
    # symbols (automatic dynamic), which inductor miscompiles for 64-bit shifts.
    name = f"round_bits_{spec.carrier.name}_{spec.mode.value}"
    name += ("" if spec.signed_zero else "_nosignedzero") + ("_tally" if spec.tally else "")
    renamed: dict[str, str] = {"co_name": name}
    if sys.version_info >= (3, 11):
        renamed["co_qualname"] = name
    kernel.__code__ = kernel.__code__.replace(**renamed)  # type: ignore[arg-type]
    kernel.__name__ = kernel.__qualname__ = name
    return kernel


def _compiled_kernel(spec: Spec, device_type: str) -> KernelFn:
    cache_key = spec.cache_key(device_type)
    fn = _compiled.get(cache_key)
    if fn is None:
        with _lock:
            fn = _compiled.get(cache_key)
            if fn is None:
                # Not dynamic=True: that also turns the closure's Python ints (carrier
                # constants) into symbols, and inductor then miscompiles the 64-bit shifts.
                # The element count alone is marked dynamic, at each call.
                fn = torch.compile(_make(spec), fullgraph=True)
                _compiled[cache_key] = fn
    return fn


class KernelMismatchError(RuntimeError):
    """The compiled kernel disagrees with the eager one on the probe patterns."""


def probe_bits(carrier: Carrier, device: torch.device) -> torch.Tensor:
    """Bit patterns spread over the carrier's whole integer range (both signs, every
    exponent, subnormals, infinities' neighbours, NaN payloads), one more than a multiple of
    no vector width, so a compiled kernel's vector body and scalar tail both see them."""
    i = torch.arange(COMPILE_THRESHOLD + 37, dtype=torch.int64, device=device)
    h = mix32(i ^ 0x2545F491)
    if carrier.width == 32:
        return torch.where(h >= 1 << 31, h - (1 << 32), h).to(torch.int32)
    return (h << 32) | mix32(i ^ 0x6C8E9CF5)


def _verify(
    kernel: KernelFn, spec: Spec, params: torch.Tensor, key: torch.Tensor, device: torch.device
) -> None:
    """Check a newly obtained compiled kernel against the eager function, bit for bit.

    Inductor caches compiled kernels on disk; a cache entry built for another CPU vector
    ISA (a cache directory shared by different nodes, or ``ATEN_CPU_CAPABILITY`` changed
    between runs) is reused without recompiling and then leaves some vector lanes
    unrounded. One call on :func:`probe_bits` catches that before any result is returned.

    Raises:
        KernelMismatchError: the compiled kernel gives other bits or counts.
    """
    probe = probe_bits(spec.carrier, device)
    dest = torch.empty_like(probe)
    torch._dynamo.mark_dynamic(probe, 0)
    torch._dynamo.mark_dynamic(dest, 0)
    got = kernel(probe, dest, params, key)
    want = torch.empty_like(probe)
    counts = _eager(spec, probe, want, params, key)
    if not (torch.equal(dest, want) and (not spec.tally or torch.equal(got, counts))):
        wrong = int((dest != want).sum())
        raise KernelMismatchError(
            f"the compiled {spec.mode.value} kernel ({spec.carrier.name} carrier) gives other "
            f"bits than the eager one on {wrong} of {probe.numel()} probe values; a "
            "TorchInductor cache built for another CPU (TORCHINDUCTOR_CACHE_DIR) is the usual "
            "cause"
        )


def _eager(
    spec: Spec, b: torch.Tensor, out: torch.Tensor | None, p: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    """The kernel function itself (what the compiled kernels trace): :func:`run`'s
    arguments, ``b`` the bits and ``p`` the parameters."""
    args = (spec.carrier, spec.mode, spec.signed_zero)
    if spec.tally:
        res, counts = round_tally(b, p, key, *args)
        (b if out is None else out).copy_(res)
        return counts
    res = round_bits(b, p, key, *args)
    return res if out is None else out.copy_(res)


def run(
    bits: torch.Tensor,
    out: torch.Tensor | None,
    params: torch.Tensor,
    key: torch.Tensor,
    spec: Spec,
) -> torch.Tensor:
    """Round 1-D contiguous carrier bits with the chosen backend.

    Args:
        bits: the carrier's integer view of the input.
        out: receives the result (same shape and dtype; a separate buffer is fastest,
            ``bits`` itself rounds in place); None: a new buffer (with ``spec.tally``:
            ``bits``).
        params, key: the format's parameter vector and the stochastic key.
        spec: which kernel; with ``tally`` it also counts as
            :func:`~precision._kernel.round_tally` does (int32: at most 2**31 - 1 elements).

    Returns:
        The rounded bits (``out`` when given), or with ``spec.tally`` the counts.

    Raises:
        RuntimeError: the ``compiled`` backend is required and the kernel cannot be built
            or gives other bits than the eager one.
    """
    if torch.compiler.is_compiling():
        # Inside a user's torch.compile region: trace the plain function into their graph.
        return _eager(spec, bits, out, params, key)
    backend = get_backend()
    device_type = bits.device.type
    if backend == "compiled" or (
        backend == "auto"
        and bits.numel() >= COMPILE_THRESHOLD
        and device_type not in _compile_failed
    ):
        try:
            return _run_compiled(spec, bits, out, params, key)
        except Exception as exc:
            _give_up_compiling(exc, backend, device_type)
    return _eager(spec, bits, out, params, key)


def _run_compiled(
    spec: Spec,
    bits: torch.Tensor,
    out: torch.Tensor | None,
    params: torch.Tensor,
    key: torch.Tensor,
) -> torch.Tensor:
    """:func:`run` with the compiled kernel, checked on its first use in this process."""
    dest = empty_output(bits) if out is None else out
    torch._dynamo.mark_dynamic(bits, 0)
    if dest is not bits:
        torch._dynamo.mark_dynamic(dest, 0)
    kernel = _compiled_kernel(spec, bits.device.type)
    checked = spec.cache_key(bits.device.type)
    if checked not in _verified:
        _verify(kernel, spec, params, key, bits.device)
        _verified.add(checked)
    return kernel(bits, dest, params, key)


def _give_up_compiling(exc: Exception, backend: str, device_type: str) -> None:
    """Raise ``exc`` as a RuntimeError when the ``compiled`` backend is required; else
    remember that ``device_type`` cannot compile and warn once (the caller runs eager)."""
    if backend == "compiled":
        raise RuntimeError(
            f"torch.compile could not build the rounding kernel on {device_type}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    _compile_failed.add(device_type)
    why = str(exc) if isinstance(exc, KernelMismatchError) else type(exc).__name__
    warnings.warn(
        f"precision: torch.compile failed on {device_type} ({why}); "
        "using the eager kernel (same bits, slower). Set PRECISION_KERNEL=eager to "
        "skip the attempt.",
        RuntimeWarning,
        stacklevel=5,
    )
