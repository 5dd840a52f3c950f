"""Boundary classes: where a target sits on the isolation spectrum, so a report reads left to right from bare metal
to VMs. Each kind says which class its targets are in (`Kind.boundary`); the runner writes that into run.json
(`boundaries`), and the report orders and groups targets by it. A leaf: stdlib only.
"""

from __future__ import annotations

BARE_METAL = "bare metal"
CONTAINER = "container runtimes"
SANDBOXED = "sandboxed runtimes"
VM = "VMs"
OTHER = "other"
ORDER = (BARE_METAL, CONTAINER, SANDBOXED, VM, OTHER)

# OCI runtimes whose workload does not meet the host kernel: gVisor's user-space kernel, Kata's and Firecracker's VMs
SANDBOXED_RUNTIMES = ("runsc", "gvisor", "kata", "firecracker", "fc")


def runtime_class(runtime: str | None) -> str:
    """A container runtime's class from its registered name (`kata-fc`, `runsc-kvm`, `io.containerd.kata.v2`)."""
    name = (runtime or "").lower()
    parts = name.replace(".", "-").split("-")
    return SANDBOXED if any(tag in parts or name.startswith(tag) for tag in SANDBOXED_RUNTIMES) else CONTAINER


def rank(boundary: str | None) -> int:
    """Position on the spectrum (unknown classes last)."""
    return ORDER.index(boundary) if boundary in ORDER else len(ORDER)
