"""The GPU part of the fingerprint beyond name and driver: what decides whether two GPU numbers are comparable.

- persistence and compute mode: without persistence, a GPU nobody holds open pays NVIDIA's documented 1-3 s
  initialisation (ECC scrubbing) on first use, which a fresh VM pays every time and a bare-metal host running
  the persistence daemon never does, so context init would blame the hypervisor;
- the NUMA node and local CPUs of the device, the visible devices and CUDA_MODULE_LOADING (torch sets LAZY when
  it is unset), the kernel module's version (in a container: the host's driver), torch's CUDA and cuBLAS;
- max clocks and BAR1 size: a guest whose firmware gives the GPU a small 64-bit MMIO window shows a BAR1 smaller
  than the device memory (`bar1_note`).

The current PCIe link is *not* comparable: it trains down when idle, so rules.VOLATILE ignores it; the max
link (`pcie_*_max`) is hardware, and the link while busy is in each sample's telemetry. Stdlib-only.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}
ENV = ("CUDA_MODULE_LOADING", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
GiB = 1 << 30


def nvml_probes(pynvml: Any) -> dict[str, tuple[str, tuple[Any, ...], Any]]:
    """Extra (function, args, pick) probes per device, merged into fingerprint._gpus_nvml's."""
    sm, mem = getattr(pynvml, "NVML_CLOCK_SM", 1), getattr(pynvml, "NVML_CLOCK_MEM", 2)
    return {
        "persistence_mode": ("nvmlDeviceGetPersistenceMode", (), lambda v: "enabled" if v else "disabled"),
        "compute_mode": ("nvmlDeviceGetComputeMode", (), lambda v: COMPUTE_MODES.get(v, str(v))),
        "max_sm_clock_mhz": ("nvmlDeviceGetMaxClockInfo", (sm,), lambda v: v),
        "max_mem_clock_mhz": ("nvmlDeviceGetMaxClockInfo", (mem,), lambda v: v),
        "enforced_power_limit_w": ("nvmlDeviceGetEnforcedPowerLimit", (), lambda v: v / 1000),
        "bar1_total_bytes": ("nvmlDeviceGetBAR1MemoryInfo", (), lambda v: v.bar1Total),
    }


def sysfs_bus_id(nvml_bus: str) -> str:
    """NVML's "00000000:3B:00.0" as sysfs names it, "0000:3b:00.0"."""
    domain, _, rest = nvml_bus.partition(":")
    return f"{int(domain, 16) & 0xFFFF:04x}:{rest.lower()}" if rest else nvml_bus.lower()


def placement(bus: str | None, sys: Path = Path("/sys")) -> dict[str, Any]:
    """NUMA node (None when sysfs says -1) and local CPUs of the device at `bus` (NVML form)."""
    if not bus:
        return {}
    dev = sys / "bus/pci/devices" / sysfs_bus_id(bus)
    out: dict[str, Any] = {}
    try:
        node = int(((dev / "numa_node").read_text()).strip())
        out["numa_node"] = node if node >= 0 else None
        out["local_cpus"] = (dev / "local_cpulist").read_text().strip()
    except (OSError, ValueError):
        pass
    return out


def bar1_note(gpu: dict[str, Any]) -> str | None:
    """Why the BAR1 aperture looks too small, or None: below the device memory it cannot map it all."""
    bar1, total = gpu.get("bar1_total_bytes"), gpu.get("memory_total_bytes")
    if not isinstance(bar1, int) or not isinstance(total, int) or bar1 >= total:
        return None
    return (
        f"BAR1 is {bar1 / GiB:.3g} GiB, smaller than the {total / GiB:.3g} GiB of device memory: large-BAR / 64-bit "
        "MMIO is off (a VM: raise the guest firmware's 64-bit MMIO window; bare metal: 'Above 4G decoding' and "
        "Resizable BAR in the BIOS)"
    )


def finish(gpu: dict[str, Any]) -> dict[str, Any]:
    """Per-device fields derived after the NVML probes."""
    gpu.update(placement(gpu.get("pci_bus_id")))
    note = bar1_note(gpu)
    if note:
        gpu["bar1_note"] = note
    return gpu


def _torch_cuda() -> str | None:
    """torch's CUDA version read from torch/version.py: importing torch takes seconds and maps hundreds of MB."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for where in spec.submodule_search_locations:
        try:
            text = (Path(where) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*['\"]([^'\"]*)['\"]", text, re.MULTILINE)
        return m.group(1) if m else None
    return None


def kernel_module(proc: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The loaded NVIDIA kernel module's version: in a container it is the host's driver."""
    try:
        first = proc.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", first)
    return m.group(1) if m else first.strip()[:200]


def environment() -> dict[str, Any]:
    """Process-wide GPU facts (for a target that has a GPU or its device nodes)."""
    return {
        "env": {k: os.environ.get(k) for k in ENV},
        "kernel_module": kernel_module(),
        "torch_cuda": _torch_cuda(),
    }
