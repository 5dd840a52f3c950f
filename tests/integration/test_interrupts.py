"""Ctrl-C and SIGTERM at every point of an instance's life leave no workdir and no agent behind.

Each scenario is a real `benchbed run` on the local target (forked from a harness imported once, see
interrupt_zygote.py) with its own TMPDIR, stopped at one point of its second instance — inside mkdtemp, before
the agent is spawned, between fork and Popen's return, while the agent starts, mid-sample, halfway through the
teardown — or at a delay that moves through the whole run, then signalled. Every scenario must end with exit
code 130, an empty TMPDIR, no process naming it, and the run marked incomplete with the first instance's
samples kept. The whole matrix runs ROUNDS times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchbed.results import load_run
from tests.integration.test_agent import processes_mentioning

pytestmark = pytest.mark.local

ROUNDS = 20
WORKERS = 3  # scenarios at once: the agents mostly wait, so this fits on 2 cores
REPS = 4
WAIT_S = 60.0

BEACON = '''
import os, time
from dataclasses import dataclass
from pathlib import Path
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    beacons: str = ""
    pause: bool = False

@workload("test.beacon", params=P)
def beacon(p, ctx):
    """Litters its workdir (the teardown has a tree to remove); with `pause`, its second run stops after two
    samples until the test has sent its signal."""
    for i in range(20):
        Path(f"litter-{i}").write_text("x" * 100)
    n = 0
    while True:
        try:
            os.close(os.open(os.path.join(p.beacons, f"agent-{n}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            n += 1
    for i in range(ctx.repetitions):
        if p.pause and n == 1 and i == 2:
            Path(p.beacons, "sample#1").write_text("")
            deadline = time.monotonic() + 60
            while not Path(p.beacons, "sample#1.ack").exists() and time.monotonic() < deadline:
                time.sleep(0.002)
        time.sleep(0.02)
        yield Sample("t", float(i), "s", "lower", "measure", i)
'''


@dataclass(frozen=True)
class Point:
    """Where to interrupt: harness `points` (see interrupt_zygote), and the beacons to signal at, in order."""

    name: str
    points: dict[str, str]
    signal_at: tuple[str, ...]
    pause: bool = False  # the workload pauses mid-sample in the second instance
    delay_s: float = 0.0  # between beacon and signal: × round for `spread` (0-190 ms), else × (round % 10)


POINTS = [  # in the second instance (#1) unless said otherwise
    Point("in-mkdtemp", {"mkdir#1": "pause"}, ("mkdir#1",)),  # the workdir exists, mkdtemp has not returned
    Point("before-spawn", {"put#1": "pause"}, ("put#1",)),  # agent.pyz copied, agent not started
    Point("in-popen", {"fork#1": "pause"}, ("fork#1",)),  # agent forked, Popen has not returned
    Point("agent-start", {"fork#1": "mark"}, ("fork#1",), delay_s=0.005),  # 0-45 ms into the agent's start-up
    Point("mid-sample", {}, ("sample#1",), pause=True),  # the agent is between two samples
    Point("in-teardown", {"rmtree#1": "pause"}, ("rmtree#1",)),  # its workdir half removed, after a clean end
    Point("twice", {"rmtree#1": "pause"}, ("sample#1", "rmtree#1"), pause=True),  # again, during that teardown
    Point("spread", {"fork#0": "mark"}, ("fork#0",), delay_s=0.01),  # anywhere from the first agent's start on
]
OTHER = {signal.SIGINT: signal.SIGTERM, signal.SIGTERM: signal.SIGINT}


class Zygote:
    """The harness imported once; `start` forks a `benchbed run` child from it and returns the child's pid."""

    def __init__(self, repo: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.interrupt_zygote"],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},  # no pools: it forks
        )
        self.lock = threading.Lock()

    def start(self, root: Path, suite: Path, points: dict[str, str]) -> int:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write(json.dumps({"dir": str(root), "suite": str(suite), "points": points}) + "\n")
            self.proc.stdin.flush()
            return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()  # its end of input: the zygote exits
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def zygote(repo_root: Path) -> Iterator[Zygote]:
    z = Zygote(repo_root)
    try:
        yield z
    finally:
        z.close()


def wait_for(path: Path, root: Path) -> bool:
    """Until `path` exists; False once the harness has ended (ROOT/exit) without writing it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if (root / "exit").exists():
            return path.exists()
        time.sleep(0.002)
    return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def scenario(zygote: Zygote, base: Path, rnd: int, point: Point, sig: signal.Signals) -> str | None:
    """Run one interrupted harness; None when nothing is left behind, else what was."""
    root = base / f"{rnd:02d}-{point.name}-{sig.name}"
    (root / "tmp").mkdir(parents=True)
    (root / "beacons").mkdir()
    (root / "beacon.py").write_text(BEACON)
    params = {"beacons": str(root / "beacons"), "pause": point.pause}
    (root / "s.yaml").write_text(
        f"name: intr\nbaseline: local\nmodules: [beacon.py]\n"
        f"defaults: {{instances: 3, repetitions: {REPS}, warmup: 0}}\n"
        f"workloads:\n  - name: test.beacon\n    params: {json.dumps(params)}\n"
    )
    pid = zygote.start(root, root / "s.yaml", point.points)
    what = f"round {rnd}, {point.name}, {sig.name}"
    try:
        for i, beacon in enumerate(point.signal_at):
            if not wait_for(root / "beacons" / beacon, root):
                return f"{what}: never reached {beacon}: {tail(root)}"
            time.sleep(point.delay_s * (rnd if point.name == "spread" else rnd % 10))
            if (root / "exit").exists():
                return f"{what}: the run ended before the signal: {tail(root)}"
            os.kill(pid, sig if i == 0 else OTHER[sig])
            (root / "beacons" / f"{beacon}.ack").write_text("")
        if not wait_for(root / "exit", root):
            return f"{what}: harness did not end within {WAIT_S:g} s"
    finally:
        deadline = time.monotonic() + WAIT_S
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
    return judge(root, what, point)


def judge(root: Path, what: str, point: Point) -> str | None:
    problems = []
    code = int((root / "exit").read_text())
    err = (root / "stderr").read_text()
    if code != 130 or "interrupted" not in err or "Traceback" in err:
        problems.append(f"exit {code}: {tail(root)}")
    left = sorted(p.name for p in (root / "tmp").iterdir())
    if left:
        problems.append(f"left in TMPDIR: {left}")
    agents = processes_mentioning(str(root / "tmp"))
    if agents:
        problems.append(f"agent processes left: {agents}")
        for pid in agents:
            os.kill(pid, signal.SIGKILL)
    (run_dir,) = (root / "res").iterdir()
    run = load_run(run_dir)
    if run.meta["status"] != "incomplete":
        problems.append(f"run status {run.meta['status']!r}")
    if not run.samples["value"].notna().all():
        problems.append("samples without a value")
    if point.name != "spread":  # interrupted in the second instance: the first one's samples are all kept
        first = run.cases[run.cases.instance == 0]
        if list(first.status) != ["ok"] or (run.samples.instance == 0).sum() != REPS:
            problems.append(f"first instance not kept: {first.to_dict('records')}")
    return f"{what}: {'; '.join(problems)}" if problems else None


def tail(root: Path) -> str:
    return " | ".join((root / "stderr").read_text().strip().splitlines()[-3:]) if (root / "stderr").exists() else ""


def test_interrupt_at_every_point_leaves_no_workdir_and_no_agent(zygote: Zygote, tmp_path: Path) -> None:
    matrix = [(rnd, p, s) for rnd in range(ROUNDS) for p in POINTS for s in (signal.SIGINT, signal.SIGTERM)]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda m: scenario(zygote, tmp_path, *m), matrix))
    failures = [r for r in results if r]
    assert not failures, f"{len(failures)} of {len(matrix)} scenarios left something:\n" + "\n".join(failures[:20])
