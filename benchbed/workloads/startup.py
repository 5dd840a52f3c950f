"""Start-up workloads: how long a fresh interpreter (and a fresh `import`) takes inside the target.

These time whole processes, so they are measured from the agent, which runs inside the target: the cost of the
boundary (seccomp filters, overlay filesystems, a VM's page faults) shows, the controller's transport does not.
Stdlib-only; `spawn_until_line` is shared with gpu.context_init.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from benchbed.workloads.base import Context, Sample, Skipped, workload

CHILD_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ChildRun:
    """One child process: its first stdout line, when that line arrived and when the child exited."""

    line: str
    ready_s: float
    exit_s: float
    rc: int
    stderr: str
    timed_out: bool


def spawn_until_line(argv: Sequence[str], timeout_s: float = CHILD_TIMEOUT_S) -> ChildRun:
    """Start argv and time Popen → first stdout line, and Popen → exit.

    stderr goes to a file, not a pipe, so a chatty child can never block us while we wait on stdout. A timer kills
    a child that hangs, so the agent always comes back. OSError from Popen (no such interpreter) propagates.
    """
    killed: list[bool] = []
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf)

        def kill() -> None:
            killed.append(True)
            proc.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            t1 = time.perf_counter_ns()
            proc.stdout.read()
            rc = proc.wait()
            t2 = time.perf_counter_ns()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        errf.seek(0)
        stderr = errf.read()[-4000:].decode("utf-8", errors="replace")
    return ChildRun(
        line.decode("utf-8", errors="replace").strip(), (t1 - t0) / 1e9, (t2 - t0) / 1e9, rc, stderr, bool(killed)
    )


def _python(p_python: str) -> str:
    return p_python or sys.executable


def _spawn(argv: list[str]) -> ChildRun:
    try:
        return spawn_until_line(argv)
    except FileNotFoundError as err:
        raise Skipped(f"interpreter {argv[0]!r} does not exist in this target") from err


def child_failed(what: str, run: ChildRun) -> RuntimeError:
    how = f"was killed after {CHILD_TIMEOUT_S:g} s" if run.timed_out else f"exited {run.rc}"
    tail = run.stderr.strip().splitlines()[-1:] or ["no stderr"]
    return RuntimeError(f"{what} {how} without the expected output (first line {run.line!r}; stderr: {tail[0]})")


def child_report(what: str, run: ChildRun) -> dict[str, Any]:
    """The JSON object a measuring child printed as its first line; anything else is a failed child."""
    try:
        report = json.loads(run.line)
    except ValueError:
        report = None
    if not isinstance(report, dict) or run.rc != 0:
        raise child_failed(what, run)
    return report


@dataclass(frozen=True)
class Process:
    python: str = ""  # "" = the interpreter that runs the agent
    isolated: bool = False  # -I -S: no user environment, no site-packages, the bare interpreter


@workload("startup.process", params=Process, tags={"startup"})
def process(p: Process, ctx: Context) -> Iterator[Sample]:
    """Interpreter start-up: Popen → first stdout line ('ready', flushed), and Popen → exit, in ms."""
    argv = [_python(p.python), *(["-I", "-S"] if p.isolated else []), "-c", "print('ready', flush=True)"]
    labels = {"python": argv[0], "isolated": p.isolated}
    for phase, rep in ctx.schedule():
        run = _spawn(argv)
        if run.line != "ready" or run.rc != 0:
            raise child_failed(f"{argv[0]} -c print('ready')", run)
        yield Sample("spawn_to_ready", run.ready_s * 1e3, "ms", "lower", phase, rep, labels=labels)
        yield Sample("spawn_to_exit", run.exit_s * 1e3, "ms", "lower", phase, rep, labels=labels)


# The child times the import itself, so interpreter start-up is not in `import_time`. A missing module (not a
# broken one: that is an error worth seeing) is reported as such and becomes Skipped.
_IMPORT_CHILD = """\
import importlib, json, sys, time
name = sys.argv[1]
t0 = time.perf_counter()
try:
    importlib.import_module(name)
except ModuleNotFoundError as err:
    if err.name and (name == err.name or name.startswith(err.name + ".")):
        print(json.dumps({"missing": str(err)}), flush=True)
        raise SystemExit(0)
    raise
print(json.dumps({"import_s": time.perf_counter() - t0}), flush=True)
"""


@dataclass(frozen=True)
class Import:
    module: str = "numpy"
    python: str = ""  # "" = the interpreter that runs the agent


@workload("startup.import", params=Import, tags={"startup"})
def import_time(p: Import, ctx: Context) -> Iterator[Sample]:
    """`import <module>` in a fresh interpreter, timed inside it (ms); also Popen → exit of that process."""
    argv = [_python(p.python), "-c", _IMPORT_CHILD, p.module]
    labels = {"python": argv[0], "module": p.module}
    for phase, rep in ctx.schedule():
        run = _spawn(argv)
        report = child_report(f"import {p.module} in {argv[0]}", run)
        if "missing" in report:
            raise Skipped(f"module {p.module!r} is not installed in this target ({report['missing']})")
        yield Sample("import_time", float(report["import_s"]) * 1e3, "ms", "lower", phase, rep, labels=labels)
        yield Sample("spawn_to_exit", run.exit_s * 1e3, "ms", "lower", phase, rep, labels=labels)
