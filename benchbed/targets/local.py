"""`local`: this host as a plain process — the bare-metal baseline."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from benchbed import boundary
from benchbed.errors import ProvisionError, TransportError
from benchbed.interrupts import held_signals
from benchbed.owner import OWNER_FILE, owner_alive, owner_label
from benchbed.protocol import WATCH_ENV
from benchbed.stacks import chroot
from benchbed.stacks.rootfs import Rootfs, ensure_rootfs
from benchbed.targets.base import CommandResult, Endpoint, Kind, LineHandler, PhaseClock, SessionImpl, Tail, TargetImpl
from benchbed.targets.spec import TargetBase
from benchbed.targets.streams import TICK_S, iter_lines

WORKDIR_PREFIX = "benchbed-"
KILL_WAIT_S = 30.0  # how long a SIGKILLed agent (and its children) may take to be gone
log = logging.getLogger(__name__)


class LocalTarget(TargetBase):
    """This host, as a plain process: the bare-metal baseline."""

    kind: Literal["local"] = "local"
    stack: str | None = Field(
        None,
        description="An image (name or id in the Docker engine) whose userland the agent runs on: chrooted into "
        "its rootfs, unpacked once per host, in a private mount namespace (needs root). See docs/stacks.md",
    )


class LocalKind(Kind):
    name = "local"
    boundary_class = boundary.BARE_METAL
    spec = LocalTarget
    impl = "benchbed.targets.local:LocalProvisioner"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        """Workdirs (and any agent still in one) of dead runs; stack rootfs unpacks a killed harness left half done."""
        from benchbed.stacks import rootfs

        removed = sweep_workdirs(everything=everything)
        if any(getattr(spec, "stack", None) for spec in specs) or everything:
            removed += rootfs.sweep()
        return removed

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """This host's workdirs are always swept by `benchbed cleanup`: it costs one directory listing."""
        return LocalTarget()


class LocalSession(SessionImpl):
    """A workdir and the agents started in it. `close()` kills them and removes the workdir, in that order:
    an agent left running (or still dying) would write into the tree while it is removed, or recreate it."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.agents: set[subprocess.Popen[bytes]] = set()  # started and not yet reaped
        self.env: dict[str, str] | None = None  # the environment of started commands (None: this process's)
        self.launch_dir: str | None = workdir  # where commands start (None: here; a Slurm workdir is on the node)
        # the host's own files: hashes keyed by file identity stay valid across instances and runs
        self.stack_cache = str(Path.home() / ".cache" / "benchbed" / "stack-hashes.json")

    def command(self, argv: Sequence[str]) -> list[str]:
        """The command line actually started for argv (a stack session wraps it)."""
        return list(argv)

    def serve_net(self) -> dict[str, Any]:
        return {"bind": "127.0.0.1", "port": 0}  # the host's own loopback: any free port

    def endpoint(self, port: int) -> AbstractContextManager[Endpoint | None]:
        return contextlib.nullcontext(Endpoint("127.0.0.1", port, "loopback"))

    def put(self, local: Path, remote: str) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as err:
            raise TransportError(f"local: cannot copy {local} to {remote}: {err.strerror}") from err

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        t0 = time.perf_counter()
        err_tail = Tail()
        timed_out = threading.Event()
        proc: subprocess.Popen[bytes] | None = None
        drain: threading.Thread | None = None
        timer: threading.Timer | None = None
        try:
            # Ctrl-C waits until the agent is recorded and its helpers run: one landing after the fork but before
            # `proc` was bound used to orphan the agent, which then recreated the workdir after its removal.
            with held_signals():
                try:
                    command = self.command(argv)
                    proc = subprocess.Popen(
                        command,
                        env={**(self.env or os.environ), WATCH_ENV: "stdin"},
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        stdin=subprocess.PIPE,  # held open while we live: the agent ends itself when it closes
                        cwd=self.launch_dir,
                        start_new_session=True,  # its own process group: one killpg ends the agent and its children
                    )
                except OSError as err:
                    return CommandResult(tuple(argv), 127, "", f"cannot start {argv[0]!r}: {err.strerror}", 0.0)
                self.agents.add(proc)
                drain, timer = _helpers(proc, err_tail, timed_out, timeout)
            assert proc.stdout is not None
            rest = iter_lines(_ticking_read(proc.stdout.fileno()), on_line)
            if rest:
                on_line(rest)
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited; reaped below, after its group
        finally:
            if proc is not None:
                with held_signals():  # a second Ctrl-C or SIGTERM must not stop this halfway
                    if timer is not None:  # its kill() must not outlive the process it names
                        timer.cancel()
                        timer.join()
                    rc = self._end(proc)  # interrupted or on_line raised: the agent is killed here, not left behind
                    if drain is not None:  # the agent's group is gone, so its stderr has ended
                        drain.join(timeout=5)
                    for pipe in (proc.stdin, proc.stdout, proc.stderr):
                        if pipe is not None:
                            with suppress(OSError):
                                pipe.close()
        return CommandResult(tuple(argv), rc, "", str(err_tail), time.perf_counter() - t0, timed_out.is_set())

    def _end(self, proc: subprocess.Popen[bytes]) -> int:
        """Kill the agent's process group (the agent if it still runs, or what it left behind), reap the agent,
        and wait until nothing of its group is left. Until it is reaped, the agent's pid keeps its group id
        from being reused, so the killpg cannot hit a stranger."""
        if proc.returncode is None:
            _kill_group(proc)
        try:
            rc = proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:  # stuck in the kernel (D state): say so rather than hang on Ctrl-C
            log.warning("agent pid %d in %s did not die within %g s of SIGKILL", proc.pid, self.workdir, KILL_WAIT_S)
            return -signal.SIGKILL
        _wait_group_gone(proc.pid)
        self.agents.discard(proc)
        return rc

    def close(self) -> None:
        """Kill every agent still recorded, wait until their process groups are gone, then remove the workdir."""
        with held_signals():
            for proc in list(self.agents):
                self._end(proc)
            shutil.rmtree(self.workdir, ignore_errors=True)


def sweep_workdirs(*, everything: bool = False) -> list[str]:
    """Remove the local workdirs whose harness is gone (all of them with `everything`), ending first any process
    still working in one (an agent that outlived a SIGKILLed harness). A workdir without its owner file is not
    ours to judge, and is left alone."""
    removed = []
    for workdir in sorted(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")):
        try:
            owner = (workdir / OWNER_FILE).read_text().strip()
        except OSError:
            continue
        if not everything and owner_alive(owner):
            continue
        for pid in _working_in(workdir):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
        if not workdir.exists():
            removed.append(f"workdir {workdir} (harness {owner})")
    return removed


def _working_in(workdir: Path) -> list[int]:
    """Pids whose current directory is in `workdir` (what an agent started there keeps until it ends)."""
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            where = cwd.readlink()
        except OSError:
            continue
        if where == workdir or workdir in where.parents:
            found.append(int(cwd.parent.name))
    return found


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


def _helpers(
    proc: subprocess.Popen[bytes], err_tail: Tail, timed_out: threading.Event, timeout: float | None
) -> tuple[threading.Thread, threading.Timer | None]:
    """Started: a thread keeping the tail of the agent's stderr and, with a timeout, a timer that kills it."""
    stderr = proc.stderr
    assert stderr is not None

    def pump() -> None:
        with suppress(OSError):
            for chunk in iter(lambda: os.read(stderr.fileno(), 65536), b""):
                err_tail.add(chunk.decode("utf-8", "replace"))

    def kill() -> None:
        timed_out.set()
        _kill_group(proc)

    drain = threading.Thread(target=pump, daemon=True)
    drain.start()
    timer = threading.Timer(timeout, kill) if timeout else None
    if timer is not None:
        timer.daemon = True  # never a reason for the interpreter to wait at exit
        timer.start()
    return drain, timer


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_group_gone(pgid: int) -> None:
    """SIGKILL is asynchronous: a killed child of the agent may still finish a write into the workdir. Wait
    until the group is empty (its members reaped), so that what is removed next stays removed."""
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        with suppress(ChildProcessError):  # orphans are ours to reap when we are PID 1 (a container's init)
            os.waitpid(-pgid, os.WNOHANG)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.01)
    log.warning("process group %d outlived SIGKILL by %g s", pgid, KILL_WAIT_S)


class StackSession(LocalSession):
    """A local session whose commands run chrooted into a stack's rootfs (benchbed.stacks.chroot)."""

    def __init__(self, workdir: str, rootfs: Rootfs, binds: Sequence[str], driver_libs: Sequence[str]) -> None:
        super().__init__(workdir)
        self.stack_cache = None  # the host's cache is not visible inside the chroot
        self.rootfs = rootfs
        self.binds = list(binds)
        self.driver_libs = list(driver_libs)

    def command(self, argv: Sequence[str]) -> list[str]:
        wrapped, extra = chroot.wrap(
            argv,
            rootfs=self.rootfs.path,
            workdir=self.workdir,
            binds=self.binds,
            image_env=self.rootfs.env,
            driver_libs=self.driver_libs,
        )
        self.env = {**os.environ, **extra}
        return wrapped


class LocalProvisioner(TargetImpl):
    def __init__(self, name: str, spec: LocalTarget, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self._open: list[LocalSession] = []  # provisioned and not yet torn down: close() ends what is left
        self._rootfs: Rootfs | None = None

    def _stack(self, image: str) -> Rootfs:
        """The stack's rootfs, unpacked on first use (its cost is the `stack_unpack` phase of that instance)."""
        if self._rootfs is None:
            chroot.require_root(f"target {self.name!r}")
            self._rootfs = ensure_rootfs(image)
            if self._rootfs.unpack_s:
                self._clock.add("stack_unpack", self._rootfs.unpack_s)
        return self._rootfs

    def _session(self, workdir: str) -> LocalSession:
        spec: LocalTarget = self.spec
        if not spec.stack:
            return LocalSession(workdir)
        binds = [spec.scratch_dir] if spec.scratch_dir else []
        return StackSession(workdir, self._stack(spec.stack), binds, chroot.host_driver_libraries())

    def describe(self) -> dict[str, Any]:
        if self._rootfs is None:
            return {}
        return {"stack_image": {"name": self._rootfs.image, "id": self._rootfs.image_id, "boundary": "chroot"}}

    @contextmanager
    def provision(self) -> Iterator[LocalSession]:
        self._clock = PhaseClock()
        if self.spec.stack:
            self._stack(self.spec.stack)  # unpacked once per host, outside the held section: Ctrl-C stops it
        t0 = time.perf_counter()
        session: LocalSession | None = None
        try:
            with held_signals():  # the workdir exists only once it is recorded (Ctrl-C inside mkdtemp leaked it)
                try:
                    workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{self.run_id}-")
                except OSError as err:
                    raise self.error(ProvisionError, f"cannot create a temp dir: {err.strerror}") from err
                try:
                    Path(workdir, OWNER_FILE).write_text(owner_label())
                    session = self._session(workdir)
                except BaseException:
                    shutil.rmtree(workdir, ignore_errors=True)
                    raise
                self._open.append(session)
            self._clock.add("workdir", time.perf_counter() - t0)
            yield session
        finally:
            if session is not None:
                with held_signals():
                    session.close()
                    if session in self._open:  # close() may have ended it first, if this ran late
                        self._open.remove(session)

    def close(self) -> None:
        """End of run (the runner calls this, also after Ctrl-C): tear down any instance whose own teardown never
        ran, e.g. an interrupt that landed between the workdir's creation and the runner entering its block."""
        with held_signals():
            while self._open:
                self._open.pop().close()
