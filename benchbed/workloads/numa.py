"""Host-buffer placement for host↔device copies: run on the CPUs of the GPU's NUMA node before allocating, so
first-touch puts the pages there (what nvbandwidth does with NVML's CPU affinity). Stdlib-only.

On a two-socket HGX node an H2D copy from the other socket's memory crosses the inter-socket link; left to
chance, the figure depends on where the scheduler happened to start the process. Placement is read from sysfs
(`/sys/bus/pci/devices/<bus>/numa_node`, `/sys/devices/system/node/node<N>/cpulist`), which containers see too;
a VM without a guest NUMA topology says -1, recorded as unknown rather than guessed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PLACEMENTS = ("local", "remote", "any")
SYS = Path("/sys")  # tests point this at a fake tree


def parse_cpulist(text: str) -> set[int]:
    """ "0-3,8,10-11" → {0, 1, 2, 3, 8, 10, 11}."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def format_cpulist(cpus: set[int]) -> str:
    out: list[str] = []
    for cpu in sorted(cpus):
        if out and out[-1].split("-")[-1] == str(cpu - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{cpu}"
        else:
            out.append(str(cpu))
    return ",".join(out)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def pci_numa_node(bus_id: str | None, sys: Path | None = None) -> int | None:
    """The NUMA node sysfs gives a PCI device ("0000:3b:00.0"), None when unknown (-1, or no such device)."""
    if not bus_id:
        return None
    text = _read((sys or SYS) / "bus/pci/devices" / bus_id.lower() / "numa_node")
    if text is None or not text.strip().lstrip("-").isdigit():
        return None
    node = int(text)
    return node if node >= 0 else None


def node_cpus(sys: Path | None = None) -> dict[int, set[int]]:
    """CPUs of every NUMA node that has any."""
    out: dict[int, set[int]] = {}
    for d in sorted(((sys or SYS) / "devices/system/node").glob("node[0-9]*")):
        cpus = parse_cpulist(_read(d / "cpulist") or "")
        if cpus:
            out[int(d.name[4:])] = cpus
    return out


@dataclass(frozen=True)
class Placement:
    """Where the host buffers of a copy were placed, for the sample's labels."""

    requested: str  # local | remote | any
    gpu_node: int | None
    cpu_node: int | None  # the node whose CPUs we ran on while allocating (None: affinity left alone)
    cpus: str  # the affinity in effect, as a cpulist
    note: str  # why the request could not be honoured, or ""

    def labels(self) -> dict[str, object]:
        out: dict[str, object] = {
            "numa": self.requested,
            "gpu_numa_node": self.gpu_node,
            "host_numa_node": self.cpu_node,
            "cpus": self.cpus,
        }
        if self.note:
            out["placement_note"] = self.note
        return out


def place(bus_id: str | None, requested: str, sys: Path | None = None) -> tuple[Placement, Callable[[], None]]:
    """Set this process's CPU affinity to the GPU's node (local) or another node (remote); returns the placement
    and a function that restores the affinity. `any` changes nothing and records what was in effect."""
    if requested not in PLACEMENTS:
        raise ValueError(f"numa placement {requested!r} is not one of {', '.join(PLACEMENTS)}")
    getaff = getattr(os, "sched_getaffinity", None)
    setaff = getattr(os, "sched_setaffinity", None)
    before: set[int] = set(getaff(0)) if getaff else set()
    gpu_node = pci_numa_node(bus_id, sys)
    nodes = node_cpus(sys)

    def keep(note: str) -> tuple[Placement, Callable[[], None]]:
        return Placement(requested, gpu_node, None, format_cpulist(before), note), lambda: None

    if requested == "any":
        return keep("")
    if gpu_node is None:
        return keep(f"the GPU's NUMA node is unknown (sysfs numa_node of {bus_id or 'an unknown bus id'})")
    if setaff is None:
        return keep("this platform cannot set CPU affinity")
    if requested == "local":
        target = gpu_node
    else:
        others = [n for n in nodes if n != gpu_node]
        if not others:
            return keep(f"no NUMA node other than the GPU's ({gpu_node}) has CPUs: there is no remote node")
        target = others[0]
    allowed = nodes.get(target, set()) & before
    if not allowed:
        return keep(f"no CPU of node {target} is allowed to this process (cpuset {format_cpulist(before)})")
    setaff(0, allowed)
    return Placement(requested, gpu_node, target, format_cpulist(allowed), ""), lambda: setaff(0, before)
