"""`local`: this host as a plain process — the bare-metal baseline."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from benchbed.errors import ProvisionError, TransportError
from benchbed.targets.base import CommandResult, Kind, LineHandler, PhaseClock, SessionImpl, Tail, TargetImpl
from benchbed.targets.spec import TargetBase
from benchbed.targets.streams import TICK_S, iter_lines

WORKDIR_PREFIX = "benchbed-"


class LocalTarget(TargetBase):
    """This host, as a plain process: the bare-metal baseline."""

    kind: Literal["local"] = "local"


class LocalKind(Kind):
    name = "local"
    spec = LocalTarget
    impl = "benchbed.targets.local:LocalProvisioner"


class LocalSession(SessionImpl):
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def put(self, local: Path, remote: str) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as err:
            raise TransportError(f"local: cannot copy {local} to {remote}: {err.strerror}") from err

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        except OSError as err:
            return CommandResult(tuple(argv), 127, "", f"cannot start {argv[0]!r}: {err.strerror}", 0.0)
        assert proc.stdout is not None
        assert proc.stderr is not None
        err_tail = Tail()
        stderr = proc.stderr

        def pump() -> None:
            for chunk in iter(lambda: os.read(stderr.fileno(), 65536), b""):
                err_tail.add(chunk.decode("utf-8", "replace"))

        drain = threading.Thread(target=pump, daemon=True)
        drain.start()
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            rest = iter_lines(_ticking_read(proc.stdout.fileno()), on_line)
            if rest:
                on_line(rest)
            rc = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:  # interrupted (Ctrl-C) or on_line raised: never leave the agent behind
                _kill_group(proc)
                proc.wait()
            drain.join(timeout=5)
            proc.stdout.close()
            proc.stderr.close()
        return CommandResult(tuple(argv), rc, "", str(err_tail), time.perf_counter() - t0, timed_out.is_set())


def _ticking_read(fd: int) -> Iterator[bytes]:
    """os.read that wakes every TICK_S, so Ctrl-C reaches the main thread even while the agent is silent."""
    while True:
        ready, _, _ = select.select([fd], [], [], TICK_S)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        yield chunk


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class LocalProvisioner(TargetImpl):
    @contextmanager
    def provision(self) -> Iterator[LocalSession]:
        self._clock = PhaseClock()
        t0 = time.perf_counter()
        workdir: str | None = None
        try:
            try:
                workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{self.run_id}-")
            except OSError as err:
                raise self.error(ProvisionError, f"cannot create a temp dir: {err.strerror}") from err
            self._clock.add("workdir", time.perf_counter() - t0)
            yield LocalSession(workdir)
        finally:
            if workdir is not None:
                _remove_tree(workdir)


def _remove_tree(path: str, attempts: int = 20) -> None:
    """rmtree that outlasts a dying child: on Ctrl-C the agent (same process group) may still be writing into its
    workdir while we delete it, which leaves a non-empty directory behind; retry briefly until it is gone."""
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.1)
