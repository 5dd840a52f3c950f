"""The GPU fingerprint fields that decide comparability, against a fake NVML, sysfs, procfs and torch tree."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchbed.agent import fingerprint, gpuprint
from benchbed.rules import Rules
from tests.unit.fakegpu import FakeNvml


def test_nvml_fingerprint_records_modes_clocks_bar1_and_placement(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nvml = FakeNvml()
    nvml.persistence, nvml.compute_mode = 0, 3
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    dev = tmp_path / "bus/pci/devices/0000:3b:00.0"
    dev.mkdir(parents=True)
    (dev / "numa_node").write_text("1\n")
    (dev / "local_cpulist").write_text("32-63\n")
    real = gpuprint.placement
    monkeypatch.setattr(gpuprint, "placement", lambda bus: real(bus, tmp_path))
    gpus = fingerprint._gpus_nvml()
    assert gpus
    g = gpus[0]
    assert (g["persistence_mode"], g["compute_mode"]) == ("disabled", "exclusive_process")
    assert (g["max_sm_clock_mhz"], g["max_mem_clock_mhz"], g["enforced_power_limit_w"]) == (1980, 2619, 700.0)
    assert (g["numa_node"], g["local_cpus"]) == (1, "32-63")
    assert g["bar1_total_bytes"] == 128 << 30
    assert "bar1_note" not in g
    assert (g["driver"], g["cuda_driver"], g["mig_mode"]) == ("570.86.15", "12.8", None)


def test_small_bar1_is_noted() -> None:
    note = gpuprint.bar1_note({"bar1_total_bytes": 256 << 20, "memory_total_bytes": 80 << 30})
    assert note
    assert note.startswith("BAR1 is 0.25 GiB, smaller than the 80 GiB of device memory")
    assert "64-bit MMIO" in note
    assert gpuprint.bar1_note({"bar1_total_bytes": 128 << 30, "memory_total_bytes": 80 << 30}) is None
    assert gpuprint.bar1_note({"bar1_total_bytes": None, "memory_total_bytes": 80 << 30}) is None


def test_unknown_numa_node_is_none(tmp_path: Path) -> None:
    dev = tmp_path / "bus/pci/devices/0000:3b:00.0"
    dev.mkdir(parents=True)
    (dev / "numa_node").write_text("-1\n")
    (dev / "local_cpulist").write_text("0-7\n")
    assert gpuprint.placement("00000000:3B:00.0", tmp_path) == {"numa_node": None, "local_cpus": "0-7"}
    assert gpuprint.placement(None, tmp_path) == {}
    assert gpuprint.sysfs_bus_id("00000000:3B:00.0") == "0000:3b:00.0"


def test_kernel_module_version(tmp_path: Path) -> None:
    proc = tmp_path / "version"
    proc.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16)\n"
        "GCC version:  gcc version 12.2.0\n"
    )
    assert gpuprint.kernel_module(proc) == "570.86.15"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.161.08  Tue Mar  5 22:42:15 UTC 2024\n")
    assert gpuprint.kernel_module(proc) == "535.161.08"
    assert gpuprint.kernel_module(tmp_path / "absent") is None


def test_torch_cuda_is_read_without_importing_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (pkg / "version.py").write_text("__version__ = '2.13.0'\ncuda: Optional[str] = '12.8'\ngit_version = 'x'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert gpuprint.environment()["torch_cuda"] == "12.8"
    assert "torch" not in sys.modules
    monkeypatch.setenv("CUDA_MODULE_LOADING", "EAGER")
    assert gpuprint.environment()["env"]["CUDA_MODULE_LOADING"] == "EAGER"


def test_idle_pcie_link_is_not_a_difference_but_its_max_and_persistence_are() -> None:
    base = {"gpus": [{"pcie_gen": 5, "pcie_width": 16, "pcie_gen_max": 5, "persistence_mode": "enabled"}]}
    idle = {"gpus": [{"pcie_gen": 1, "pcie_width": 16, "pcie_gen_max": 5, "persistence_mode": "enabled"}]}
    tested, warned = Rules().env_diff(base, idle, under_test=None)
    assert (tested, warned) == ([], [])
    other = {"gpus": [{"pcie_gen": 1, "pcie_width": 16, "pcie_gen_max": 4, "persistence_mode": "disabled"}]}
    tested, warned = Rules().env_diff(base, other, under_test=None)
    assert [c.key for c in tested] == ["gpus.0.persistence_mode"]
    assert [c.key for c in warned] == ["gpus.0.pcie_gen_max"]
