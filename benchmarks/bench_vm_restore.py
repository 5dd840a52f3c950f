"""Per-instance cost of a libvirt VM instance, `start: boot` against `start: restore`, on the same guest.

An instance is what the runner pays per case: provision (overlay, create/restore, boot/resume, SSH connect and the
first command, which carries a restored guest's refresh) → one command in the guest → teardown (destroy, remove
files). Booted and restored
instances alternate where they can, so machine load hits both alike; the restore target's one boot + save is
reported apart and amortised over the instances an hour buys. Also: the MDE those instance counts give on a
workload whose instance medians spread by --log-sd (0.10: cpu.stream's spread between TCG instances here), two
targets sharing the hour.

Teardown waits until QEMU is reaped: start libvirtd under a subreaper (`tini -s -- libvirtd`, as scripts/ci-setup
does), or a PID 1 that reaps late is in every instance (1.2-2 s on our CI machines; docs/performance-libvirt.md).

    python benchmarks/bench_vm_restore.py [--boots 2] [--restores 6] [--log-sd 0.10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchbed.targets.libvirt import LibvirtTarget as Spec
from benchbed.targets.libvirtvm import LibvirtProvisioner
from benchbed.verdict import mde_from_sd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration import libvirtd


def instance(target: LibvirtProvisioner) -> tuple[float, dict[str, float]]:
    """One instance's wall time, and its phases plus `command` (one command in the guest, as a case's first) and
    `teardown` (SSH closed, domain destroyed, files removed)."""
    t = time.perf_counter()
    target.next_case("util.noop")
    with target.provision() as session:
        t1 = time.perf_counter()
        session.run(["true"]).check()
        phases = target.startup_phases()
        phases["command"] = time.perf_counter() - t1
        t2 = time.perf_counter()
    end = time.perf_counter()
    phases["teardown"] = end - t2
    return end - t, phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--boots", type=int, default=2)
    ap.add_argument("--restores", type=int, default=6)
    ap.add_argument("--log-sd", type=float, default=0.10)
    args = ap.parse_args()
    why = libvirtd.missing_reason()
    if why:
        sys.exit(f"bench_vm_restore: {why}")
    overlays = libvirtd.overlay_dir()

    def spec(**extra: object) -> Spec:  # both wait up to 60 s for the SSH handshake: a loaded TCG host needs it
        base = libvirtd.guest_spec(overlays, **extra)
        return Spec.model_validate({**base, "ssh": {**base["ssh"], "connect_timeout_s": 60}})

    boot = LibvirtProvisioner("boot", spec(), "bench-boot")
    rest = LibvirtProvisioner("restore", spec(start="restore"), "bench-rst")
    booted: list[float] = []
    restored: list[float] = []
    save_s = 0.0
    phases: dict[str, list[float]] = {}
    boot_phases: dict[str, list[float]] = {}
    try:
        for i in range(max(args.boots, args.restores + 1)):
            if i < args.boots:
                wall, ph = instance(boot)
                booted.append(wall)
                for k, v in ph.items():
                    boot_phases.setdefault(k, []).append(v)
                print(f"booted   {wall:7.2f} s", file=sys.stderr, flush=True)
            if i < args.restores + 1:
                wall, ph = instance(rest)
                if "save" in ph:  # the first: boot + save, then its own restore
                    save_s = ph["save"]
                    wall -= save_s
                restored.append(wall)
                for k, v in ph.items():
                    phases.setdefault(k, []).append(v)
                print(f"restored {wall:7.2f} s  {json.dumps({k: round(v, 2) for k, v in ph.items()})}", file=sys.stderr)
    finally:
        boot.close()
        rest.close()
        shutil.rmtree(overlays, ignore_errors=True)
    b, r = statistics.median(booted), statistics.median(restored)
    per_hour_boot = int(3600 // b)
    per_hour_restore = int((3600 - save_s) // r)
    out = {
        "virt_type": "qemu",
        "booted_instance_s": booted,
        "restored_instance_s": restored,
        "save_once_s": save_s,
        "median_booted_s": b,
        "median_restored_s": r,
        "boot_over_restore": b / r,
        "instances_per_hour": {"boot": per_hour_boot, "restore": per_hour_restore},
        "mde_per_hour": {  # two targets sharing the hour, n instances each: the change found with 80 % power
            "log_sd": args.log_sd,
            "boot": mde_from_sd(args.log_sd, per_hour_boot // 2, args.log_sd, per_hour_boot // 2),
            "restore": mde_from_sd(args.log_sd, per_hour_restore // 2, args.log_sd, per_hour_restore // 2),
        },
        "restored_phase_medians_s": {k: statistics.median(v) for k, v in phases.items()},
        "booted_phase_medians_s": {k: statistics.median(v) for k, v in boot_phases.items()},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
