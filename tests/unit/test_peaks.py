"""Plausibility guards: the datasheet table checked against the hardware arithmetic it follows from, MIG
shares, and the upper and lower bounds."""

from __future__ import annotations

import pytest

from benchbed.workloads import peaks

H100_SXM = "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(
    ("name", "label"),
    [
        (H100_SXM, "H100 SXM"),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "H100 SXM MIG 1g.10gb"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB SXM"),
        ("NVIDIA GH200 480GB", None),  # NVLink-C2C host link: not an H200
        ("NVIDIA H100 NVL", None),  # more memory bandwidth than the SXM part: no guard rather than a wrong one
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_lookup_by_device_name(name: str, label: str | None) -> None:
    found = peaks.lookup(name)
    assert (found.label if found else None) == label


def test_datasheet_figures() -> None:
    sxm, pcie = peaks.lookup(H100_SXM), peaks.lookup("NVIDIA H100 PCIe")
    h200, a100 = peaks.lookup("NVIDIA H200"), peaks.lookup("NVIDIA A100-SXM4-80GB")
    assert sxm
    assert pcie
    assert h200
    assert a100
    assert sxm.matmul_tflops == {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}
    assert (pcie.matmul_tflops["bf16"], pcie.matmul_tflops["fp16"]) == (756.5, 756.5)
    assert (sxm.memory_gbs, pcie.memory_gbs, h200.memory_gbs, a100.memory_gbs) == (3350, 2000, 4800, 2039)
    assert (sxm.host_link_gbs, a100.host_link_gbs) == (64, 32)


@pytest.mark.parametrize("entry", peaks.table(), ids=lambda p: p.label)
def test_every_figure_follows_from_sms_flop_per_clock_and_a_real_clock(entry: peaks.GpuPeaks) -> None:
    """Each matmul figure is SMs × FLOP/clock/SM × some clock; that clock must be one the part can run at
    (≤ its max SM clock, and not absurdly low), and the tensor-core figures share one clock. A typo in a figure,
    a wrong SM count or a sparse figure taken for a dense one breaks this."""
    assert entry.source.startswith("NVIDIA ")
    assert entry.max_sm_mhz
    clocks = {dtype: entry.implied_mhz(dtype) for dtype in ("fp32", "tf32", "fp16", "bf16")}
    for dtype, mhz in clocks.items():
        assert mhz is not None, dtype
        assert 0.75 * entry.max_sm_mhz <= mhz <= entry.max_sm_mhz * 1.001, (dtype, mhz)
    tensor = [clocks[d] for d in ("tf32", "fp16", "bf16")]
    assert max(tensor) - min(tensor) < 2.0  # MHz: one tensor clock
    assert entry.matmul_tflops["bf16"] > 10 * entry.matmul_tflops["fp32"]  # dense tensor vs fp32 lanes


@pytest.mark.parametrize("entry", peaks.table(), ids=lambda p: p.label)
def test_memory_bandwidth_follows_from_bus_width_and_memory_clock(entry: peaks.GpuPeaks) -> None:
    derived = entry.derived_memory_gbs()
    assert derived
    assert entry.memory_gbs
    assert abs(derived - entry.memory_gbs) / entry.memory_gbs < 0.05


def test_h100_tensor_figures_are_the_datasheet_boost_arithmetic() -> None:
    assert peaks.H100_SXM.implied_mhz("bf16") == pytest.approx(1830, abs=0.5)
    assert peaks.H100_PCIE.implied_mhz("bf16") == pytest.approx(1620, abs=0.5)
    assert peaks.A100.implied_mhz("bf16") == pytest.approx(1410, abs=1.0)


@pytest.mark.parametrize(
    ("name", "sms", "bf16", "memory"),
    [
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 16, 989.4 * 16 / 132, 3350 / 8),
        ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 60, 989.4 * 60 / 132, 3350 / 2),
        ("NVIDIA H100 80GB HBM3 MIG 7g.80gb", 132, 989.4, 3350),
        ("NVIDIA H200 MIG 1g.18gb", 16, 989.4 * 16 / 132, 4800 / 8),
        ("NVIDIA H200 MIG 2g.35gb", 32, 989.4 * 32 / 132, 4800 / 4),
        ("NVIDIA H100 80GB HBM3 MIG 2g.20gb", None, 989.4 * 2 / 7, 3350 / 4),  # SMs unknown: compute slices
    ],
)
def test_mig_slice_gets_its_share(name: str, sms: int | None, bf16: float, memory: float) -> None:
    found = peaks.lookup(name, sms)
    assert found
    assert found.matmul_tflops["bf16"] == pytest.approx(bf16, abs=0.01)
    assert found.memory_gbs == pytest.approx(memory, abs=0.1)
    assert found.host_link_gbs == 64
    assert found.mig
    assert "MIG" in found.label
    # the full-GPU guard would let a 1g slice report 7x its real rate; the slice's does not
    valid, reason = peaks.guard_matmul(bf16 * 1.2, "bf16", name, sms)
    assert not valid
    assert reason
    assert "MIG" in reason


def test_full_gpu_is_not_scaled() -> None:
    assert peaks.lookup(H100_SXM, 132) is peaks.H100_SXM
    assert peaks.mig_profile(H100_SXM) is None
    assert peaks.mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb") == (1, 10)


def test_lower_bound_flags_tensor_gemm_at_fp32_speed() -> None:
    why = peaks.suspicious_matmul(60.0, "bf16", 4096, H100_SXM)
    assert why
    assert why.startswith("suspicious: 60 TFLOP/s bf16 at n=4096 is not above the fp32 peak 66.9")
    assert peaks.suspicious_matmul(600.0, "bf16", 4096, H100_SXM) is None
    assert peaks.suspicious_matmul(60.0, "fp32", 4096, H100_SXM) is None  # fp32 is its own floor
    assert peaks.suspicious_matmul(5.0, "bf16", 256, H100_SXM) is None  # small n: launch-bound, not suspicious
    assert peaks.suspicious_matmul(5.0, "bf16", 4096, "Some Future GPU") is None
    # a 1g MIG slice's fp32 floor is its share, so a slice doing its honest best is not flagged
    assert peaks.suspicious_matmul(100.0, "bf16", 4096, "NVIDIA H100 80GB HBM3 MIG 1g.10gb", 16) is None


def test_guard_marks_impossible_values() -> None:
    assert peaks.guard_matmul(700.0, "bf16", H100_SXM) == (True, None)
    valid, reason = peaks.guard_matmul(1200.0, "bf16", H100_SXM)
    assert not valid
    assert reason == f"1200 TFLOP/s exceeds the datasheet peak 989.4 TFLOP/s (H100 SXM dense bf16) for {H100_SXM}"
    assert not peaks.guard_matmul(70.0, "fp32", H100_SXM)[0]
    assert not peaks.guard_memory(3400.0, H100_SXM)[0]
    assert peaks.guard_memory(3400.0, "NVIDIA H200") == (True, None)
    valid, reason = peaks.guard_host_link(70.0, "NVIDIA A100 80GB PCIe")
    assert not valid
    assert reason
    assert "32 GB/s" in reason


def test_unknown_gpu_is_never_flagged() -> None:
    assert peaks.guard_matmul(1e9, "bf16", "Some Future GPU") == (True, None)
    assert peaks.guard_memory(1e9, "Some Future GPU") == (True, None)
    assert peaks.guard_host_link(1e9, "Some Future GPU") == (True, None)
