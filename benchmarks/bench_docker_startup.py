"""benchbed's container start-up total vs `docker run --rm IMAGE true`, timed by hyperfine on the same machine.

benchbed's total is one whole container lifecycle as the docker target runs it — image check, create, start,
first exec round trip (proves python3 runs, makes the workdir), remove — with no workload. hyperfine times the
docker CLI doing create, start, wait and remove for `true`. Both use `--network none`. Rounds alternate so
machine drift hits both alike. Goal: within ±10%.

    python benchmarks/bench_docker_startup.py [--image benchbed/test-python:latest] [--rounds 5] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchbed.targets.docker import DockerTarget as Spec
from benchbed.targets.dockerengine import DockerProvisioner as DockerTarget


def benchbed_totals(image: str, runs: int) -> tuple[list[float], dict[str, float]]:
    target = DockerTarget("bench", Spec(kind="docker", image=image, pull="never"), "bench-startup")
    totals: list[float] = []
    phases: dict[str, list[float]] = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        with target.provision():
            pass
        totals.append(time.perf_counter() - t0)
        for k, v in target.startup_phases().items():
            phases.setdefault(k, []).append(v)
    target.close()
    return totals, {k: statistics.median(v) for k, v in phases.items()}


def hyperfine(image: str, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h.json"
        subprocess.run(
            [
                "hyperfine",
                "--runs",
                str(runs),
                "--warmup",
                "1",
                "--export-json",
                str(out),
                "--style",
                "none",
                f"docker run --rm --network none {image} true",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result = json.loads(out.read_text())["results"][0]
        return [float(t) for t in result["times"]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="benchbed/test-python:latest")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    if not shutil.which("hyperfine"):
        print("hyperfine is not installed (apt-get install hyperfine)", file=sys.stderr)
        return 2
    ours: list[float] = []
    theirs: list[float] = []
    phases: dict[str, list[float]] = {}
    for _ in range(a.rounds):
        totals, ph = benchbed_totals(a.image, a.runs)
        ours += totals
        for k, v in ph.items():
            phases.setdefault(k, []).append(v)
        theirs += hyperfine(a.image, a.runs)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    ratio = m_ours / m_theirs
    print(f"image {a.image}; {a.rounds} alternating rounds × {a.runs} runs each")
    print(f"benchbed container lifecycle: median {m_ours * 1e3:.0f} ms (IQR {_iqr(ours)})")
    print(f"docker run --rm … true (hyperfine): median {m_theirs * 1e3:.0f} ms (IQR {_iqr(theirs)})")
    print(f"ratio benchbed/docker-run: {ratio:.3f} (goal 0.90–1.10)")
    print(
        "benchbed phases (median): " + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in phases.items())
    )
    return 0 if 0.9 <= ratio <= 1.1 else 1


def _iqr(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"{q[0] * 1e3:.0f}–{q[2] * 1e3:.0f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
