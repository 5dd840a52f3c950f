"""What the bare-metal stack boundary (chroot into an image's rootfs) costs, per instance and once per image.

Per instance: real `benchbed run`s of util.noop (one 1 ms sample) on a plain `local` target and on a `local` target
with `stack: IMAGE`; the instance's wall time (provision → teardown, from the case record) is compared, instance 0
of each target left out (it gathers the fingerprint; the stack's also unpacks). The extra is mounts (overlay,
/proc, /sys, /dev, workdir), the exec through unshare/chroot and the overlay's teardown. Side by side, the
reference tool: `docker run --rm IMAGE true`, the cheapest way to run anything in that image with an engine.
Once per image and host: unpacking the rootfs into a fresh cache (`docker export` | tar).

    python benchmarks/bench_stack.py [--image TAG] [--instances 12]      (root, dockerd)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchbed.results import load_run
from benchbed.stacks.rootfs import ensure_rootfs

SUITE = (
    "name: stackcost\nbaseline: plain\ndefaults: {{instances: {n}, repetitions: 1, warmup: 0}}\n"
    "workloads:\n  - {{name: util.noop, params: {{duration_ms: 1}}}}\n"
)


def instance_walls(image: str, instances: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s.yaml").write_text(SUITE.format(n=instances))
        targets = {"plain": {"kind": "local"}, "stack": {"kind": "local", "stack": image}}
        (Path(tmp) / "t.yaml").write_text(json.dumps({"targets": targets}))
        cmd = [sys.executable, "-m", "benchbed.cli", "run", f"{tmp}/s.yaml", "--targets", f"{tmp}/t.yaml"]
        subprocess.run([*cmd, "--out", tmp, "--no-report"], check=True, stdout=subprocess.DEVNULL)
        (run_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        cases = load_run(run_dir).cases
    out: dict[str, list[float]] = {}
    for _, case in cases[cases.instance > 0].iterrows():
        out.setdefault(case.target, []).append(float(case.wall_s))
    return out


def docker_run_true(image: str, n: int) -> list[float]:
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True)
        walls.append(time.perf_counter() - t0)
    return walls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="benchbed/test-python:latest")
    ap.add_argument("--instances", type=int, default=12)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as cache:
        first = ensure_rootfs(args.image, root=Path(cache))
        size = sum(f.stat().st_size for f in first.path.rglob("*") if f.is_file() and not f.is_symlink())
        print(f"unpack once per image and host: {first.unpack_s:.1f} s for {size / 2**20:.0f} MiB ({args.image})")
    walls = instance_walls(args.image, args.instances)
    ref = docker_run_true(args.image, args.instances)
    plain, stack = statistics.median(walls["plain"]), statistics.median(walls["stack"])
    docker = statistics.median(ref)
    print(
        f"instance wall, median of {len(walls['plain'])}: plain local {plain * 1e3:.0f} ms, "
        f"stack local {stack * 1e3:.0f} ms (+{(stack - plain) * 1e3:.0f} ms for the chroot boundary)"
    )
    print(
        f"reference `docker run --rm IMAGE true`: {docker * 1e3:.0f} ms; "
        f"stack instance / docker run = {stack / docker:.2f}, "
        f"chroot extra / docker run = {(stack - plain) / docker:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
