"""Datasheet peaks per GPU model, for plausibility guards. Stdlib-only: this module runs inside every target.

A measured rate above what the hardware can do at all is a measuring error (a missed synchronize, a copy the
driver skipped, a buffer that lives in L2), never a result. Such a sample is still reported, with valid=False
and a reason naming the peak, so the report shows it instead of averaging it in. A rate far *below* what the
device should reach (a bf16 GEMM at fp32 speed: tensor cores unused, a MIG slice, a down-clocked or throttled
GPU) is real but suspicious: it stays valid and carries a `suspicious` label the report lists.

Numbers are NVIDIA's dense (no sparsity) datasheet figures; bandwidths are GB/s = 1e9 bytes/s. Where one entry
covers several variants (A100 40/80 GB, H200 SXM/NVL) it holds the highest figure of the family: a guard may be
loose but must never flag a real measurement. Each entry names its source and the hardware facts (SMs, FLOP per
clock per SM, max clocks, bus width) from which its figures follow, so a test can check the arithmetic and
`scripts/gpu-validate` can check them against a real device.

A MIG slice gets its share: compute scales with the slice's SM count over the full GPU's, memory bandwidth with
its memory slices (eighths of the memory; the profile name "3g.40gb" says 40 of 80 GB = 4 slices).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

PCIE_GEN4_X16_GBS = 32.0
PCIE_GEN5_X16_GBS = 64.0
MEMORY_SLICES = 8  # MIG divides device memory into eighths on A100/H100/H200
COMPUTE_SLICES = 7
LARGE_GEMM_N = 2048  # below this a GEMM is launch- or tile-bound and a low rate says nothing


@dataclass(frozen=True)
class GpuPeaks:
    label: str
    matmul_tflops: dict[str, float] = field(default_factory=dict)  # by dtype: fp32, tf32, fp16, bf16
    memory_gbs: float | None = None  # device memory, GB/s
    host_link_gbs: float | None = None  # host link per direction, GB/s
    source: str = ""  # the datasheet or whitepaper the figures come from
    sms: int | None = None  # streaming multiprocessors of the full GPU
    flop_per_clock_sm: dict[str, int] = field(default_factory=dict)  # dense FLOP per SM per clock, by dtype
    max_sm_mhz: int | None = None  # max SM clock as NVML reports it (nvidia-smi -q "Max Clocks")
    max_mem_mhz: int | None = None
    bus_bits: int | None = None  # memory interface width
    memory_gb: int | None = None  # nominal memory size of the largest variant (for MIG memory slices)
    mig: str | None = None  # "3g.40gb (sms 60/132, memory 4/8)" when scaled for a MIG slice

    def implied_mhz(self, dtype: str) -> float | None:
        """The clock at which the datasheet figure for dtype follows from SMs × FLOP/clock/SM."""
        per = self.flop_per_clock_sm.get(dtype)
        peak = self.matmul_tflops.get(dtype)
        if not (per and peak and self.sms):
            return None
        return peak * 1e12 / (self.sms * per) / 1e6

    def derived_memory_gbs(self) -> float | None:
        """bus width × max memory clock × 2 (double data rate), in GB/s."""
        if not (self.bus_bits and self.max_mem_mhz):
            return None
        return self.bus_bits / 8 * self.max_mem_mhz * 1e6 * 2 / 1e9


# Dense FLOP per SM per clock: Hopper's 4th-gen tensor cores do 4096 fp16/bf16 (2048 tf32); 128 fp32 lanes × FMA.
_HOPPER_PER_CLOCK = {"bf16": 4096, "fp16": 4096, "tf32": 2048, "fp32": 256}
_AMPERE_PER_CLOCK = {"bf16": 2048, "fp16": 2048, "tf32": 1024, "fp32": 128}
# 989.4 = 132 SMs × 4096 × 1830 MHz (the tensor figure's boost clock); fp32 66.9 = 132 × 256 × 1980 MHz.
_H100_SXM_TFLOPS = {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}
H100_SXM = GpuPeaks(
    "H100 SXM",
    _H100_SXM_TFLOPS,
    3350.0,
    PCIE_GEN5_X16_GBS,
    source="NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column) and Hopper architecture whitepaper",
    sms=132,
    flop_per_clock_sm=_HOPPER_PER_CLOCK,
    max_sm_mhz=1980,
    max_mem_mhz=2619,
    bus_bits=5120,
    memory_gb=80,
)
# 756.5 = 114 SMs × 4096 × 1620 MHz; fp32 51.2 = 114 × 256 × 1755 MHz.
H100_PCIE = GpuPeaks(
    "H100 PCIe",
    {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2},
    2000.0,
    PCIE_GEN5_X16_GBS,
    source="NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe column)",
    sms=114,
    flop_per_clock_sm=_HOPPER_PER_CLOCK,
    max_sm_mhz=1755,
    max_mem_mhz=1593,
    bus_bits=5120,
    memory_gb=80,
)
H200 = GpuPeaks(
    "H200",
    _H100_SXM_TFLOPS,
    4800.0,
    PCIE_GEN5_X16_GBS,
    source="NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column; the NVL part is lower)",
    sms=132,
    flop_per_clock_sm=_HOPPER_PER_CLOCK,
    max_sm_mhz=1980,
    max_mem_mhz=3201,
    bus_bits=6144,
    memory_gb=141,
)
# 312 = 108 SMs × 2048 × 1410 MHz.
A100 = GpuPeaks(
    "A100 80GB SXM",
    {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
    2039.0,
    PCIE_GEN4_X16_GBS,
    source="NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM column)",
    sms=108,
    flop_per_clock_sm=_AMPERE_PER_CLOCK,
    max_sm_mhz=1410,
    max_mem_mhz=1593,
    bus_bits=5120,
    memory_gb=80,
)

# (pattern searched case-insensitively in the device name, peaks). First match wins, so specific names go first.
# Word boundaries keep "GH200" (NVLink-C2C host link, different memory) from matching H200.
_TABLE: tuple[tuple[str, GpuPeaks], ...] = (
    (r"\bh100\b.*\bpcie\b", H100_PCIE),
    (r"\bh100\b.*(\bsxm|\bhbm3\b)", H100_SXM),
    (r"\bh200\b", H200),
    (r"\ba100\b", A100),
)
_MIG = re.compile(r"\bMIG\s+(\d)g\.(\d+)gb\b", re.IGNORECASE)


def table() -> tuple[GpuPeaks, ...]:
    return tuple(p for _, p in _TABLE)


def mig_profile(device_name: str) -> tuple[int, int] | None:
    """(compute slices, memory GB) of a MIG device name ("... MIG 3g.40gb"), None for a full GPU."""
    m = _MIG.search(device_name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def for_mig(full: GpuPeaks, compute_slices: int, memory_gb: int, sms: int | None) -> GpuPeaks:
    """The share of a MIG slice: compute by SM count (or compute slices / 7 when the SM count is unknown, which
    is never below the real share), memory bandwidth by memory slices; the host link is not divided."""
    if sms and full.sms:
        share, how = sms / full.sms, f"sms {sms}/{full.sms}"
    else:
        share, how = compute_slices / COMPUTE_SLICES, f"compute slices {compute_slices}/{COMPUTE_SLICES}"
    total_gb = full.memory_gb or memory_gb
    mem_slices = max(1, min(MEMORY_SLICES, round(memory_gb / total_gb * MEMORY_SLICES)))
    return dataclasses.replace(
        full,
        label=f"{full.label} MIG {compute_slices}g.{memory_gb}gb",
        matmul_tflops={k: round(v * share, 2) for k, v in full.matmul_tflops.items()},
        memory_gbs=round(full.memory_gbs * mem_slices / MEMORY_SLICES, 1) if full.memory_gbs else None,
        sms=sms or full.sms,
        mig=f"{compute_slices}g.{memory_gb}gb ({how}, memory {mem_slices}/{MEMORY_SLICES})",
    )


def lookup(device_name: str, sms: int | None = None) -> GpuPeaks | None:
    """Peaks for a device name as CUDA reports it ("NVIDIA H100 80GB HBM3"), or None for an unknown model.

    `sms` is the SM count CUDA reports for the device; for a MIG slice it sets the slice's compute share."""
    for pattern, peaks in _TABLE:
        if re.search(pattern, device_name, re.IGNORECASE):
            profile = mig_profile(device_name)
            return for_mig(peaks, profile[0], profile[1], sms) if profile else peaks
    return None


def check(value: float, unit: str, peak: float | None, what: str, device_name: str) -> tuple[bool, str | None]:
    """(valid, reason): invalid only when a known peak exists and the value is above it."""
    if peak is None or value <= peak:
        return True, None
    return False, f"{value:.4g} {unit} exceeds the datasheet peak {peak:g} {unit} ({what}) for {device_name}"


def guard_matmul(value_tflops: float, dtype: str, device_name: str, sms: int | None = None) -> tuple[bool, str | None]:
    peaks = lookup(device_name, sms)
    peak = peaks.matmul_tflops.get(dtype) if peaks else None
    label = f"{peaks.label} dense {dtype}" if peaks else dtype
    return check(value_tflops, "TFLOP/s", peak, label, device_name)


def suspicious_matmul(value_tflops: float, dtype: str, n: int, device_name: str, sms: int | None = None) -> str | None:
    """Why a large tensor-core GEMM rate is implausibly low, or None: at or below the same device's fp32 (no
    tensor core) peak, a bf16/fp16/tf32 GEMM cannot have used its tensor cores at full clock."""
    peaks = lookup(device_name, sms)
    floor = peaks.matmul_tflops.get("fp32") if peaks else None
    if peaks is None or floor is None or dtype == "fp32" or n < LARGE_GEMM_N or value_tflops > floor:
        return None
    return (
        f"suspicious: {value_tflops:.4g} TFLOP/s {dtype} at n={n} is not above the fp32 peak {floor:g} TFLOP/s of "
        f"{peaks.label} (tensor cores unused, a MIG slice, a down-clocked or throttled GPU?)"
    )


def guard_memory(value_gbs: float, device_name: str) -> tuple[bool, str | None]:
    peaks = lookup(device_name)
    what = f"{peaks.label} memory bandwidth" if peaks else "memory bandwidth"
    return check(value_gbs, "GB/s", peaks.memory_gbs if peaks else None, what, device_name)


def guard_host_link(value_gbs: float, device_name: str) -> tuple[bool, str | None]:
    peaks = lookup(device_name)
    what = f"{peaks.label} PCIe x16 link, per direction" if peaks else "host link"
    return check(value_gbs, "GB/s", peaks.host_link_gbs if peaks else None, what, device_name)
