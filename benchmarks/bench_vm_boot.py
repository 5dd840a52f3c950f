"""Boot-to-SSH of one guest as benchbed measures it vs the same domain started and polled by a plain script.

benchbed: `overlay + create + boot` phases of the libvirt target's provision() (createXML until the guest's sshd
sends its banner through the 127.0.0.1 forward). Plain: the same rendered domain XML on a fresh overlay,
createXML, then a loop that connects to the forwarded port every 10 ms and waits for `SSH-`. Both end at the
banner, so the difference is what benchbed's own polling and bookkeeping add. Rounds alternate so machine drift
hits both alike. Goal: benchbed adds ≤ 0.2 s.

    python benchmarks/bench_vm_boot.py [--rounds 3]   (needs libvirtd and scripts/build-vm-image)
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

import libvirt

from benchbed.config import LibvirtTarget as Spec
from benchbed.targets import vmspec
from benchbed.targets.libvirt import LibvirtTarget

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration import libvirtd


def benchbed_boot(spec: Spec, i: int) -> tuple[float, dict[str, float]]:
    target = LibvirtTarget("bench", spec, f"bench-boot-{i}")
    try:
        with target.provision():
            phases = target.startup_phases()
    finally:
        target.close()
    return phases["overlay"] + phases["create"] + phases["boot"], phases


def plain_boot(spec: Spec, i: int) -> float:
    """What a careful hand-written script does: overlay, createXML, connect + banner every 10 ms."""
    overlays = Path(str(spec.overlay_dir))
    name = f"plain-boot-{i}"
    overlay = overlays / f"{name}.qcow2"
    conn = libvirt.open(spec.uri)
    dom = None
    try:
        t0 = time.perf_counter()
        vmspec.create_overlay(Path(spec.image), overlay)
        port = vmspec.free_port()
        xml = vmspec.render_domain(
            spec, name=name, run_id="plain", target="plain", overlay=overlay, pci=[], host_port=port, console_log=None
        )
        dom = conn.createXML(xml, 0)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.01)
    finally:
        if dom is not None:
            dom.destroy()
        overlay.unlink(missing_ok=True)
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    why = libvirtd.missing_reason()
    if why:
        sys.exit(f"bench_vm_boot: {why}")
    overlays = libvirtd.overlay_dir()
    spec = Spec.model_validate(libvirtd.guest_spec(overlays))
    ours: list[float] = []
    plain: list[float] = []
    phases: list[dict[str, float]] = []
    try:
        for i in range(args.rounds):
            b, p = benchbed_boot(spec, i)
            ours.append(b)
            phases.append(p)
            plain.append(plain_boot(spec, i))
            print(f"round {i}: benchbed {b:.2f} s  plain {plain[-1]:.2f} s", file=sys.stderr)
    finally:
        shutil.rmtree(overlays, ignore_errors=True)
    diffs = [b - p for b, p in zip(ours, plain, strict=True)]
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "virt_type": spec.virt_type,
                "benchbed_boot_s": ours,
                "plain_boot_s": plain,
                "median_added_s": statistics.median(diffs),
                "phases_median": {k: statistics.median(p[k] for p in phases) for k in phases[0]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
