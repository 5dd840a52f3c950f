"""What the `slurm` target adds per instance on top of a bare `srun` of the same agent command.

benchbed: a run of one slurm target (pinned to one node) with N instances of one case; each instance's cost is its
case record's `total` (sbatch, wait for the allocation, probe step, sbcast, the agent's step, scancel and the wait
for the job's end) minus the queue wait. Two readings of "queue wait": the scheduler's own record (StartTime −
SubmitTime, whole seconds) and everything until the job was seen running (`queue_wait` + `job_start`: the batch
scheduler's cycle, which an interactive `srun` does not wait for).
bare: `srun --nodes=1 --ntasks=1 --exclusive --nodelist=NODE PYTHON agent.pyz run SPEC` — the same agent bytes and
spec, the allocation made by srun itself — timed around the command. Rounds alternate. Goal: ratio ≤ 1.10.

    python benchmarks/bench_slurm.py [--instances 10] [--rounds 3] [--duration-ms 400] [--repetitions 5]

Needs the loopback cluster of scripts/setup-slurm.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.integration, when run as a script

from benchbed.agent.build import build_agent
from benchbed.protocol import PROTOCOL
from benchbed.results import load_run
from tests.integration import slurmctl as C
from tests.integration import sshd as S


def ours(base: Path, node: str, work: dict[str, object], n: int) -> tuple[list[float], list[float], dict[str, float]]:
    runner = S.run_suite(base, {"box": C.spec(nodelist=node)}, [work], defaults={"instances": n, "warmup": 1})
    cases = load_run(runner.run_dir).cases
    assert set(cases.status) == {"ok"}, cases[["status", "reason"]]
    sched = [p["total"] - p["queue_wait"] for p in cases.phases]
    seen = [p["total"] - p["queue_wait"] - p["job_start"] for p in cases.phases]
    keys = sorted({k for p in cases.phases for k in p})
    return sched, seen, {k: statistics.median(p.get(k, 0.0) for p in cases.phases) for k in keys}


def bare(base: Path, node: str, work: dict[str, object], n: int) -> list[float]:
    agent = build_agent(base / "agent")
    spec = {
        "workload": work["name"],
        "params": work["params"],
        "instance": 0,
        "repetitions": work["repetitions"],
        "warmup": 1,
        "timeout_s": 600,
        "fingerprint": False,
        "scratch_dir": str(base / "scratch"),
        "expect_sha256": agent.sha256,
        "protocol": PROTOCOL,
        "stack_cache": None,
    }
    argv = ["srun", "--nodes=1", "--ntasks=1", "--exclusive", f"--nodelist={node}", f"--chdir={base}"]
    argv += [sys.executable, str(agent.path), "run", json.dumps(spec)]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration-ms", type=int, default=400)
    ap.add_argument("--repetitions", type=int, default=5)
    a = ap.parse_args()
    why = C.missing_reason()
    if why:
        print(f"no Slurm cluster: {why}", file=sys.stderr)
        return 2
    node = C.required()[0]
    work = {"name": "util.noop", "params": {"duration_ms": a.duration_ms}, "repetitions": a.repetitions}
    sched: list[float] = []
    seen: list[float] = []
    theirs: list[float] = []
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            s, v, ph = ours(Path(tmp) / f"ours{r}", node, work, a.instances)
            sched += s
            seen += v
            for k, x in ph.items():
                phases.setdefault(k, []).append(x)
            (Path(tmp) / f"bare{r}").mkdir()
            theirs += bare(Path(tmp) / f"bare{r}", node, work, a.instances)
    med = statistics.median
    print(f"workload: util.noop {a.duration_ms} ms x {a.repetitions} (+1 warm-up), {a.instances} x {a.rounds}")
    print(f"bare srun per instance: median {med(theirs):.3f} s")
    for label, xs in (("total - queue_wait (scheduler records)", sched), ("total - queue_wait - job_start", seen)):
        print(f"benchbed, {label}: median {med(xs):.3f} s, ratio {med(xs) / med(theirs):.3f}")
    print("benchbed phases (median of round medians): " + ", ".join(f"{k} {med(v):.3f}" for k, v in phases.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
