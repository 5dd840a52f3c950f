"""Starts real `benchbed run` harnesses that stop at chosen points of an instance's life, for interrupt tests.

Run as `python -m tests.integration.interrupt_zygote`. It imports the harness once (a cold `benchbed run` spends
~1.5 CPU-s importing scipy and pandas), then forks one child per request read from stdin: a JSON object
{"dir": ..., "suite": ..., "points": {...}}. It answers each with the child's pid. The child is a plain
`benchbed run SUITE --out DIR/res --no-report` (the CLI's own main(), signal handlers and all), with
TMPDIR=DIR/tmp so that everything it leaves in the temp dir is visible, stdout/stderr in DIR/stdout and
DIR/stderr, and its exit code written to DIR/exit as it ends.

`points` names stdlib calls the harness makes, each with the occurrence to act on and "mark" or "pause":
  mkdir#N     os.mkdir of the Nth workdir (inside tempfile.mkdtemp: the directory exists, its name not returned)
  put#N       shutil.copyfile of agent.pyz into the Nth workdir (workdir made, agent not started)
  fork#N      the fork+exec of the Nth agent, in the harness (the child exists, subprocess.Popen not returned)
  rmtree#N    the first file removed from the Nth workdir (teardown, halfway)
At a point the child writes DIR/beacons/<point>; to "pause" it then waits, up to a minute, for the test to
write DIR/beacons/<point>.ack (after it sent its signal). Only stdlib functions are wrapped, so this stays
valid however the harness is arranged around them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import benchbed.agent.build
import benchbed.cleanup
import benchbed.cli
import benchbed.config
import benchbed.plan
import benchbed.results
import benchbed.runner
import benchbed.targets.local  # imported here once, not in every child

PAUSE_CAP_S = 60.0


class Points:
    def __init__(self, root: Path, tmp: Path, points: dict[str, str]) -> None:
        self.beacons = root / "beacons"
        self.prefix = str(tmp / "benchbed-")
        self.points = points
        self.seen: dict[str, int] = {}
        self.removing: str | None = None  # the rmtree point whose tree is being removed now

    def hit(self, kind: str) -> str | None:
        """Count one occurrence of `kind`; the point's name when a point is set on this occurrence."""
        n = self.seen.get(kind, 0)
        self.seen[kind] = n + 1
        name = f"{kind}#{n}"
        return name if name in self.points else None

    def reach(self, name: str) -> None:
        (self.beacons / name).write_text(str(time.monotonic()))
        if self.points[name] != "pause":
            return
        ack = self.beacons / f"{name}.ack"
        deadline = time.monotonic() + PAUSE_CAP_S
        while not ack.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.02)  # the signal was sent before the ack: let the main thread take it here

    def install(self) -> None:
        real_mkdir, real_copyfile, real_fork_exec = os.mkdir, shutil.copyfile, subprocess._fork_exec  # type: ignore[attr-defined]
        real_rmtree, real_unlink = shutil.rmtree, os.unlink

        def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
            real_mkdir(path, *args, **kwargs)
            if str(path).startswith(self.prefix) and (name := self.hit("mkdir")):
                self.reach(name)

        def copyfile(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            out = real_copyfile(src, dst, *args, **kwargs)
            if str(dst).startswith(self.prefix) and str(dst).endswith("agent.pyz") and (name := self.hit("put")):
                self.reach(name)
            return out

        def fork_exec(args: Any, *rest: Any) -> int:
            pid: int = real_fork_exec(args, *rest)
            if any(b"agent.pyz" in os.fsencode(a) for a in args or ()) and (name := self.hit("fork")):
                self.reach(name)
            return pid

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            if not str(path).startswith(self.prefix):
                return real_rmtree(path, *args, **kwargs)
            self.removing = self.hit("rmtree")
            try:
                return real_rmtree(path, *args, **kwargs)
            finally:
                self.removing = None

        def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
            real_unlink(path, *args, **kwargs)
            name, self.removing = self.removing, None
            if name:
                self.reach(name)

        os.mkdir, shutil.copyfile, shutil.rmtree, os.unlink = mkdir, copyfile, rmtree, unlink
        subprocess._fork_exec = fork_exec  # type: ignore[attr-defined]


def child(req: dict[str, Any]) -> None:
    """In the forked child: become a fresh `benchbed run` and end with its exit code in DIR/exit."""
    code = 99
    root = Path(req["dir"])
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote ignores it; the harness must reap its agents
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setpgid(0, 0)  # like a job of its own: a signal to the zygote's group never reaches it
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            out = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
        tmp = root / "tmp"
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = str(tmp)
        os.chdir(root)
        Points(root, tmp, req["points"]).install()
        sys.argv = ["benchbed", "run", req["suite"], "--out", str(root / "res"), "--no-report"]
        try:
            benchbed.cli.main()
            code = 0
        except SystemExit as end:
            code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:  # reported, never propagated into the zygote's loop
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream must not keep the exit file from being written
                stream.flush()
        (root / "exit.tmp").write_text(str(code))
        (root / "exit.tmp").replace(root / "exit")
        os._exit(code)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel; each writes its own exit
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(req)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
