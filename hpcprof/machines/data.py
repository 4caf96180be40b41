"""Built-in machine models, with the datasheet each number comes from.

Peaks are theoretical (cores x clock x FLOP per cycle) at the base clock unless a vendor
datasheet gives the figure directly; bandwidths are the vendor's peak figures except for
MCDRAM, whose sustained figure is what vendors quote. ``source`` names the documents.
Capacities are the vendors' GB (1e9 bytes).
"""

from __future__ import annotations

from dataclasses import replace

from hpcprof.machines.model import Machine, MachineKind, Memory, MemoryKind, Peak, machine_registry

_DDR4_2400_6CH = 6 * 19.2  # 6 channels x 2400 MT/s x 8 bytes = 115.2 GB/s
_DDR4_2133_6CH = 102.4  # 6 channels x 2133 MT/s x 8 bytes
# MCDRAM: "over 450 GB/s" STREAM triad in flat mode on the 7.2 GT/s parts (Sodani et al.,
# "Knights Landing: Second-Generation Intel Xeon Phi Product", IEEE Micro 36(2), 2016);
# the 7210 runs its MCDRAM at 6.4 GT/s, so 450 * 6.4 / 7.2 = 400 GB/s.
_MCDRAM_72 = 450.0
_MCDRAM_64 = 400.0


def _xeon_phi(
    name: str,
    label: str,
    *,
    cores: int,
    ghz: float,
    dp: int,
    sp: int,
    ddr: float,
    mcdram: float,
    source: str,
    sp_4fmaps: int | None = None,
) -> Machine:
    """A Xeon Phi record: peaks = cores x GHz x FLOP/cycle (``dp``, ``sp``; ``sp_4fmaps``
    for float32 code built for AVX512_4FMAPS)."""
    peaks = [(Peak.FP64, cores * ghz * dp), (Peak.FP32, cores * ghz * sp)]
    if sp_4fmaps is not None:
        peaks.append((Peak.FP32_4FMAPS, cores * ghz * sp_4fmaps))
    return Machine(
        name=name,
        label=label,
        kind=MachineKind.CPU,
        cores=cores,
        clock_ghz=ghz,
        peaks=tuple(peaks),
        memories=(
            Memory(kind=MemoryKind.MCDRAM, bandwidth_gbs=mcdram, capacity_gb=16),
            Memory(kind=MemoryKind.DDR, bandwidth_gbs=ddr, capacity_gb=384),
        ),
        source=source,
    )


# NVIDIA H100 SXM5 datasheet: FP64 34 TF, FP64 tensor 67, FP32 67, TF32 tensor 494.7,
# BF16/FP16 tensor 989.5 (dense, half the sparse figures); FP16 non-tensor 133.8
# (H100 whitepaper); HBM3 3.35 TB/s.
_H100 = Machine(
    name="h100",
    label="NVIDIA H100 SXM5 80GB",
    kind=MachineKind.GPU,
    cores=132,
    clock_ghz=1.98,
    peaks=(
        (Peak.FP64, 34000.0),
        (Peak.FP64_MATRIX, 67000.0),
        (Peak.FP32, 67000.0),
        (Peak.TF32_MATRIX, 494700.0),
        (Peak.FP16, 133800.0),
        (Peak.FP16_MATRIX, 989500.0),
    ),
    memories=(Memory(kind=MemoryKind.HBM, bandwidth_gbs=3350.0, capacity_gb=80),),
    source="NVIDIA H100 Tensor Core GPU datasheet; NVIDIA H100 architecture whitepaper",
)

BUILTIN: tuple[Machine, ...] = (
    # Knights Landing: 2 AVX-512 VPUs per core, 8 FP64 lanes, FMA -> 32 FP64 FLOP/cycle,
    # 64 FP32 FLOP/cycle. 7210: 64 cores, 1.3 GHz -> 2662 GFLOP/s FP64.
    _xeon_phi(
        "knl-7210",
        "Intel Xeon Phi 7210 (Knights Landing)",
        cores=64,
        ghz=1.3,
        dp=32,
        sp=64,
        ddr=_DDR4_2133_6CH,
        mcdram=_MCDRAM_64,
        source="Intel ARK 'Intel Xeon Phi Processor 7210'; Sodani et al., IEEE Micro 36(2) 2016",
    ),
    # 7250: 68 cores, 1.4 GHz -> 3046 GFLOP/s FP64 (Intel quotes "3+ TFLOPS").
    _xeon_phi(
        "knl-7250",
        "Intel Xeon Phi 7250 (Knights Landing)",
        cores=68,
        ghz=1.4,
        dp=32,
        sp=64,
        ddr=_DDR4_2400_6CH,
        mcdram=_MCDRAM_72,
        source="Intel ARK 'Intel Xeon Phi Processor 7250'; Sodani et al., IEEE Micro 36(2) 2016",
    ),
    # Knights Mill removes most FP64 units: one VPU port keeps FP64 (8 lanes x FMA = 16 FP64
    # FLOP/cycle, half of KNL's 32). Its float32 peak depends on the instructions: ordinary
    # AVX-512 FMA (what compilers emit) runs on two ports, 2 x 16 lanes x 2 = 64 FLOP/cycle
    # as on KNL, while the AVX512_4FMAPS (QFMA, four chained FMAs, double-pumped) instructions
    # reach 128 FLOP/cycle (Intel Hot Chips 29, 2017, Knights Mill talk; WikiChip "Intel
    # silently launches Knights Mill"). 7295: 72 cores at 1.5 GHz -> FP64 72 * 1.5 * 16 =
    # 1728 GFLOP/s; FP32 6912 GFLOP/s with plain FMA, 13824 with 4FMAPS (Intel's "13.8
    # TFLOPS single precision" assumes 4FMAPS code, e.g. MKL's deep-learning kernels). Only
    # the plain figure is used unless special units are asked for (``--matrix``). Same 16 GB
    # MCDRAM and 6-channel DDR4-2400 as the KNL 7250.
    _xeon_phi(
        "knm-7295",
        "Intel Xeon Phi 7295 (Knights Mill)",
        cores=72,
        ghz=1.5,
        dp=16,
        sp=64,
        sp_4fmaps=128,
        ddr=_DDR4_2400_6CH,
        mcdram=_MCDRAM_72,
        source="Intel ARK 'Intel Xeon Phi Processor 7295'; Intel Hot Chips 29 (2017) Knights "
        "Mill; FP32 13.8 TF needs AVX512_4FMAPS, 6.9 TF with plain FMA",
    ),
    # Skylake-SP Platinum 8160: 24 cores, 2.1 GHz base, 2 AVX-512 FMA units -> 32 FP64 FLOP
    # per cycle; 6 channels DDR4-2666 x 8 bytes = 128 GB/s. (AVX-512 heavy code runs at a lower
    # licence clock; the base clock is the usual nominal figure.)
    Machine(
        name="skx-8160",
        label="Intel Xeon Platinum 8160 (Skylake-SP), one socket",
        kind=MachineKind.CPU,
        cores=24,
        clock_ghz=2.1,
        peaks=((Peak.FP64, 24 * 2.1 * 32), (Peak.FP32, 24 * 2.1 * 64)),
        memories=(Memory(kind=MemoryKind.DDR, bandwidth_gbs=128.0, capacity_gb=768),),
        source="Intel ARK 'Intel Xeon Platinum 8160 Processor'",
    ),
    # Zen 4 EPYC 9654: 96 cores, 2.4 GHz base, two 256-bit FMA pipes -> 16 FP64 FLOP/cycle.
    # Zen 4 has no vector FP16 arithmetic; its AVX512_BF16 dot products (vdpbf16ps: bf16
    # pairs multiplied and summed into float32) run at twice the FP32 rate, 64 FLOP/cycle:
    # a BF16 dot-product peak, not an FP16 one (FP16 work runs at the FP32 rate here).
    # 12 channels DDR5-4800 = 460.8 GB/s.
    Machine(
        name="zen4-9654",
        label="AMD EPYC 9654 (Zen 4, Genoa), one socket",
        kind=MachineKind.CPU,
        cores=96,
        clock_ghz=2.4,
        peaks=(
            (Peak.FP64, 96 * 2.4 * 16),
            (Peak.FP32, 96 * 2.4 * 32),
            (Peak.BF16_DOT, 96 * 2.4 * 64),
        ),
        memories=(Memory(kind=MemoryKind.DDR, bandwidth_gbs=12 * 38.4, capacity_gb=6144),),
        source="AMD EPYC 9654 product page; AMD 'Zen 4' software optimization guide",
    ),
    # NVIDIA A100 SXM4 80 GB datasheet: FP64 9.7 TF, FP64 tensor 19.5, FP32 19.5, TF32
    # tensor 156, BF16/FP16 tensor 312 (dense); FP16 non-tensor 78 (A100 whitepaper).
    Machine(
        name="a100",
        label="NVIDIA A100 SXM4 80GB",
        kind=MachineKind.GPU,
        cores=108,
        clock_ghz=1.41,
        peaks=(
            (Peak.FP64, 9700.0),
            (Peak.FP64_MATRIX, 19500.0),
            (Peak.FP32, 19500.0),
            (Peak.TF32_MATRIX, 156000.0),
            (Peak.FP16, 78000.0),
            (Peak.FP16_MATRIX, 312000.0),
        ),
        memories=(Memory(kind=MemoryKind.HBM, bandwidth_gbs=2039.0, capacity_gb=80),),
        source="NVIDIA A100 Tensor Core GPU datasheet; NVIDIA A100 architecture whitepaper",
    ),
    _H100,
    # NVIDIA H200 SXM datasheet: same compute as H100 SXM5, HBM3e 4.8 TB/s, 141 GB.
    replace(
        _H100,
        name="h200",
        label="NVIDIA H200 SXM 141GB",
        memories=(Memory(kind=MemoryKind.HBM, bandwidth_gbs=4800.0, capacity_gb=141),),
        source="NVIDIA H200 Tensor Core GPU datasheet",
    ),
)

MACHINES = machine_registry(BUILTIN)
"""Built-in machine models by name."""
