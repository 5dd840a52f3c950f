"""Datasheet peaks per GPU model, for plausibility guards. Stdlib-only: this module runs inside every target.

A measured rate above what the hardware can do at all is a measuring error (a missed synchronize, a copy the
driver skipped, a buffer that lives in L2), never a result. Such a sample is still reported, with valid=False
and a reason naming the peak, so the report shows it instead of averaging it in.

Numbers are NVIDIA's dense (no sparsity) datasheet figures; bandwidths are GB/s = 1e9 bytes/s. Where one entry
covers several variants (A100 40/80 GB, H200 SXM/NVL) it holds the highest figure of the family: a guard may be
loose but must never flag a real measurement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PCIE_GEN4_X16_GBS = 32.0
PCIE_GEN5_X16_GBS = 64.0


@dataclass(frozen=True)
class GpuPeaks:
    label: str
    matmul_tflops: dict[str, float] = field(default_factory=dict)  # by dtype: fp32, tf32, fp16, bf16
    memory_gbs: float | None = None  # device memory, GB/s
    host_link_gbs: float | None = None  # host link per direction, GB/s


_H100_SXM_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "tf32": 494.7, "fp32": 66.9}

# (pattern searched case-insensitively in the device name, peaks). First match wins, so specific names go first.
# Word boundaries keep "GH200" (NVLink-C2C host link, different memory) from matching H200.
_TABLE: tuple[tuple[str, GpuPeaks], ...] = (
    (
        r"\bh100\b.*\bpcie\b",
        GpuPeaks("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2}, 2000.0, PCIE_GEN5_X16_GBS),
    ),
    (r"\bh100\b.*(\bsxm|\bhbm3\b)", GpuPeaks("H100 SXM", _H100_SXM_TFLOPS, 3350.0, PCIE_GEN5_X16_GBS)),
    (r"\bh200\b", GpuPeaks("H200", _H100_SXM_TFLOPS, 4800.0, PCIE_GEN5_X16_GBS)),
    (
        r"\ba100\b",
        GpuPeaks(
            "A100 80GB SXM", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}, 2039.0, PCIE_GEN4_X16_GBS
        ),
    ),
)


def lookup(device_name: str) -> GpuPeaks | None:
    """Peaks for a device name as CUDA reports it ("NVIDIA H100 80GB HBM3"), or None for an unknown model."""
    for pattern, peaks in _TABLE:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peaks
    return None


def check(value: float, unit: str, peak: float | None, what: str, device_name: str) -> tuple[bool, str | None]:
    """(valid, reason): invalid only when a known peak exists and the value is above it."""
    if peak is None or value <= peak:
        return True, None
    return False, f"{value:.4g} {unit} exceeds the datasheet peak {peak:g} {unit} ({what}) for {device_name}"


def guard_matmul(value_tflops: float, dtype: str, device_name: str) -> tuple[bool, str | None]:
    peaks = lookup(device_name)
    peak = peaks.matmul_tflops.get(dtype) if peaks else None
    label = f"{peaks.label} dense {dtype}" if peaks else dtype
    return check(value_tflops, "TFLOP/s", peak, label, device_name)


def guard_memory(value_gbs: float, device_name: str) -> tuple[bool, str | None]:
    peaks = lookup(device_name)
    what = f"{peaks.label} memory bandwidth" if peaks else "memory bandwidth"
    return check(value_gbs, "GB/s", peaks.memory_gbs if peaks else None, what, device_name)


def guard_host_link(value_gbs: float, device_name: str) -> tuple[bool, str | None]:
    peaks = lookup(device_name)
    what = f"{peaks.label} PCIe x16 link, per direction" if peaks else "host link"
    return check(value_gbs, "GB/s", peaks.host_link_gbs if peaks else None, what, device_name)
