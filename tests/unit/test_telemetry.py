"""NVML telemetry around every timed batch, against a scripted fake NVML (tests/unit/fakegpu.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchbed.workloads import Context, load_builtins, telemetry
from benchbed.workloads.base import Sample
from tests.unit.fakegpu import FakeNvml, FakeTorch, install

H100 = "NVIDIA H100 80GB HBM3"


def _reading(t: int, reasons: int = 0, sm: int = 1980, gen: int = 5) -> telemetry.Reading:
    return telemetry.Reading(t, sm, 2619, 500.0, 700.0, 60, reasons, gen, 16)


def test_summary_marks_any_reason_but_idle() -> None:
    calm = telemetry.summarise([_reading(0, reasons=0x1, sm=345, gen=1), _reading(1, sm=1980), _reading(2)])
    assert "throttled" not in calm
    assert (calm["sm_mhz_min"], calm["sm_mhz_max"], calm["pcie_busy"]) == (345, 1980, "gen5 x16")
    hot = telemetry.summarise([_reading(0), _reading(1, reasons=0x4 | 0x40 | 0x1), _reading(2)])
    assert hot["throttled"] == "sw_power_cap,hw_thermal_slowdown"
    assert telemetry.reason_names(0x200 | 0x8) == ["hw_slowdown", "0x200"]


def test_bus_id_in_nvml_form() -> None:
    assert telemetry.nvml_bus_id("0000:3b:00.0") == "00000000:3B:00.0"


def _gen(monkeypatch: pytest.MonkeyPatch, nvml: FakeNvml | None, **params: Any) -> Iterator[Sample]:
    install(monkeypatch, FakeTorch(H100, matmul_ms=0.2), nvml)
    info = load_builtins()["gpu.gemm"]
    return info.fn(info.params(n=4096, **params), Context(repetitions=3, warmup=1))


def _until_measure(gen: Iterator[Sample]) -> list[Sample]:
    """The cold and warm-up samples (the next one is the first measured)."""
    return [next(gen), next(gen)]


def test_every_batch_carries_its_clocks_power_and_link(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    samples = list(_gen(monkeypatch, nvml))
    timed = [s for s in samples if s.phase != "cold"]
    for s in timed:
        assert s.labels["telemetry"] == "nvml every 20 ms"
        assert s.labels["telemetry_n"] >= 1
        assert (s.labels["sm_mhz_min"], s.labels["mem_mhz_min"], s.labels["pcie_busy"]) == (1980, 2619, "gen5 x16")
        assert (s.labels["power_w_max"], s.labels["power_limit_w"], s.labels["temp_c_max"]) == (500.0, 700.0, 60)
        assert not {"throttled", "health", "other_processes"} & set(s.labels)
    assert nvml.inits == nvml.shutdowns == 1  # the sampler stopped and NVML was shut down with the workload


def test_a_throttle_marks_the_samples_it_overlapped(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    gen = _gen(monkeypatch, nvml)
    early = _until_measure(gen)
    nvml.reasons, nvml.sm_mhz = 0x4, 1410  # power cap from here on
    later = list(gen)
    assert all("throttled" not in s.labels for s in early)
    assert [s.labels["throttled"] for s in later] == ["sw_power_cap"] * 3
    assert all(s.labels["sm_mhz_min"] == 1410 for s in later)


def test_health_changes_and_other_processes_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    gen = _gen(monkeypatch, nvml)
    early = _until_measure(gen)
    nvml.ecc[1], nvml.xids, nvml.procs = 2, [79], [4242]
    later = list(gen)
    assert all("health" not in s.labels for s in early)
    assert all(s.labels["health"] == "ecc_uncorrected 0→2; xid 79" for s in later)  # the Xid stays named
    assert all(s.labels["other_processes"] == "4242" for s in later)


def test_sustained_samples_are_watched_too(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    nvml.reasons = 0x4
    sustained = [s for s in _gen(monkeypatch, nvml, sustained_s=0.5) if s.metric == "throughput_sustained"]
    assert sustained
    assert all(s.labels["throttled"] == "sw_power_cap" for s in sustained)


def test_without_nvml_the_samples_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = list(_gen(monkeypatch, None))
    assert all("pynvml (nvidia-ml-py) is not installed" in s.labels["telemetry"] for s in samples)
    assert all("sm_mhz_min" not in s.labels for s in samples)


def test_a_device_nvml_cannot_find_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(bus="00000000:AA:00.0")
    samples = list(_gen(monkeypatch, nvml))
    assert all(s.labels["telemetry"].startswith("unavailable: no device at 00000000:3B:00.0") for s in samples)
    assert nvml.inits == nvml.shutdowns == 1


def test_unknown_bus_with_renumbered_devices_is_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pynvml", FakeNvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with telemetry.watch(None, 0) as (sampler, how):
        assert sampler is None
        assert "CUDA_VISIBLE_DEVICES is set" in how
