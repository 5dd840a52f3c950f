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

from benchbed.config import LocalTarget as LocalSpec
from benchbed.errors import ProvisionError, TransportError
from benchbed.targets.base import TICK_S, CommandResult, LineHandler, PhaseClock, Tail, collect_stdout, iter_lines

WORKDIR_PREFIX = "benchbed-"


class LocalSession:
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def put(self, local: Path, remote: str) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as err:
            raise TransportError(f"local: cannot copy {local} to {remote}: {err.strerror}") from err

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        return collect_stdout(self.stream, argv, timeout)

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
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(timeout, kill) if timeout else None
        try:  # Thread.start() waits for the thread, so Ctrl-C may land in it: start both inside the try
            drain.start()
            if timer:
                timer.daemon = True  # never a reason for the interpreter to wait at exit
                timer.start()
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
            if drain.ident is not None:
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


class LocalTarget:
    def __init__(self, name: str, spec: LocalSpec, run_id: str) -> None:
        self.name = name
        self.spec = spec
        self.run_id = run_id
        self._clock = PhaseClock()

    @contextmanager
    def provision(self) -> Iterator[LocalSession]:
        self._clock = PhaseClock()
        t0 = time.perf_counter()
        workdir: str | None = None
        try:
            try:
                workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{self.run_id}-")
            except OSError as err:
                raise ProvisionError(f"target {self.name!r}: cannot create a temp dir: {err.strerror}") from err
            self._clock.add("workdir", time.perf_counter() - t0)
            yield LocalSession(workdir)
        finally:
            if workdir is not None:
                _remove_tree(workdir)

    def startup_phases(self) -> dict[str, float]:
        return dict(self._clock.phases)


def _remove_tree(path: str, attempts: int = 20) -> None:
    """rmtree that outlasts a dying child: on Ctrl-C the agent (same process group) may still be writing into its
    workdir while we delete it, which leaves a non-empty directory behind; retry briefly until it is gone."""
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.1)
