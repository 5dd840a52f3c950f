"""Environment fingerprint gathered *inside* the target: what a reader needs to judge comparability."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from benchbed.agent import gpuprint

LIBRARIES = (
    "numpy",
    "torch",
    "cupy",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "nvidia-ml-py",
    "scipy",
    "triton",
    "nvidia-cublas-cu12",
    "nvidia-cublas",
    "nvidia-cuda-runtime-cu12",
    "nvidia-cuda-runtime",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"logical_cpus": os.cpu_count(), "machine": platform.machine()}
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "model" not in info:
            info["model"] = value.strip()
        elif key == "flags" and "hypervisor_flag" not in info:
            info["hypervisor_flag"] = "hypervisor" in value.split()
    with contextlib.suppress(AttributeError, OSError):
        info["affinity"] = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_max()
    if quota:
        info["cgroup_cpu_max"] = quota
    return info


V1_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a page-rounded LONG_MAX


def _cgroup_cpu_max() -> str | None:
    """CPU quota in cgroup v2 notation ("quota period" or "max period"), read from v2 or v1."""
    v2 = _read("/sys/fs/cgroup/cpu.max")
    if v2:
        return v2.strip()
    quota, period = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota and period:
        q = quota.strip()
        return f"{'max' if q == '-1' else q} {period.strip()}"
    return None


def _cgroup_memory_max() -> str | None:
    """Memory limit in bytes (or "max"), read from cgroup v2 or v1."""
    v2 = _read("/sys/fs/cgroup/memory.max")
    if v2:
        return v2.strip()
    v1 = _read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if v1 and v1.strip().isdigit():
        return "max" if int(v1) >= V1_UNLIMITED else v1.strip()
    return None


def _memory() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key in ("MemTotal", "MemAvailable", "HugePages_Total", "Hugepagesize"):
            out[key] = value.strip()
    limit = _cgroup_memory_max()
    if limit:
        out["cgroup_memory_max"] = limit
    out["cgroup_version"] = 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1
    return out


def _run(argv: list[str], timeout: float = 5.0) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _virtualization() -> dict[str, Any]:
    """Best-effort: what boundary are we inside? Recorded, never trusted for decisions."""
    out: dict[str, Any] = {}
    virt = _run(["systemd-detect-virt"])
    if virt:
        out["systemd_detect_virt"] = virt
    out["dockerenv"] = Path("/.dockerenv").exists()
    cgroup = _read("/proc/1/cgroup") or ""
    out["container_hint"] = any(k in cgroup for k in ("docker", "containerd", "kubepods", "libpod"))
    product = _read("/sys/class/dmi/id/product_name")
    if product:
        out["dmi_product"] = product.strip()
    return out


def _libraries() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _same(value: Any) -> Any:
    return value


def _gpus_nvml() -> list[dict[str, Any]] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    gpus: list[dict[str, Any]] = []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            g: dict[str, Any] = {"index": i, "driver": driver, "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}"}
            probes: dict[str, tuple[str, tuple[Any, ...], Callable[[Any], Any]]] = {
                "name": ("nvmlDeviceGetName", (), _same),
                "uuid": ("nvmlDeviceGetUUID", (), _same),
                "pci_bus_id": ("nvmlDeviceGetPciInfo", (), lambda v: v.busId),
                "pcie_gen": ("nvmlDeviceGetCurrPcieLinkGeneration", (), _same),
                "pcie_width": ("nvmlDeviceGetCurrPcieLinkWidth", (), _same),
                "pcie_gen_max": ("nvmlDeviceGetMaxPcieLinkGeneration", (), _same),
                "pcie_width_max": ("nvmlDeviceGetMaxPcieLinkWidth", (), _same),
                "sm_clock_mhz": ("nvmlDeviceGetClockInfo", (getattr(pynvml, "NVML_CLOCK_SM", 1),), _same),
                "mem_clock_mhz": ("nvmlDeviceGetClockInfo", (getattr(pynvml, "NVML_CLOCK_MEM", 2),), _same),
                "memory_total_bytes": ("nvmlDeviceGetMemoryInfo", (), lambda v: v.total),
                "ecc_mode": ("nvmlDeviceGetEccMode", (), lambda v: v[0]),
                "mig_mode": ("nvmlDeviceGetMigMode", (), lambda v: v[0]),
                "power_limit_w": ("nvmlDeviceGetPowerManagementLimit", (), lambda v: v / 1000),
                **gpuprint.nvml_probes(pynvml),
            }
            for key, (fn, args, pick) in probes.items():
                try:
                    value = pick(getattr(pynvml, fn)(h, *args))
                    g[key] = value.decode() if isinstance(value, bytes) else value
                except Exception:  # one missing probe (old driver, MIG) must not hide the others
                    g[key] = None
            gpus.append(gpuprint.finish(g))
    finally:
        pynvml.nvmlShutdown()
    return gpus


SMI_FIELDS = (
    "index,name,uuid,driver_version,pci.bus_id,pcie.link.gen.current,pcie.link.width.current,"
    "pcie.link.gen.max,pcie.link.width.max,clocks.sm,clocks.mem,memory.total,ecc.mode.current,mig.mode.current"
)


def _gpus_smi() -> list[dict[str, Any]] | None:
    text = _run(["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"])
    if text is None:
        return None
    keys = SMI_FIELDS.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")), strict=False)) for line in text.splitlines()]


def collect() -> dict[str, Any]:
    uname = platform.uname()
    gpus = _gpus_nvml()
    source = "nvml" if gpus is not None else None
    if gpus is None:
        gpus = _gpus_smi()
        source = "nvidia-smi" if gpus is not None else None
    os_release = {}
    for line in (_read("/etc/os-release") or "").splitlines():
        key, _, value = line.partition("=")
        if key in ("PRETTY_NAME", "ID", "VERSION_ID"):
            os_release[key] = value.strip('"')
    out = {
        "hostname": uname.node,
        "os": os_release,
        "kernel": uname.release,
        "cpu": _cpu(),
        "memory": _memory(),
        "python": {
            "version": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "libraries": _libraries(),
        "virtualization": _virtualization(),
        "gpus": gpus or [],
        "gpu_telemetry_source": source,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if gpus or any(Path(node).exists() for node in ("/dev/nvidiactl", "/dev/nvidia0")):
        out["gpu_env"] = gpuprint.environment()
    return out
