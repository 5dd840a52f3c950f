"""Target protocol and registry.

A Target obtains an isolation boundary (how resources are obtained); the Session it yields starts commands in
it (how the command starts). The registry maps kind → "module:Class" so `import benchbed` never imports
paramiko, docker or libvirt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchbed.errors import CommandFailed, TargetError

TAIL_BYTES = 16_384


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one command in a target. A non-zero rc is data; `.check()` makes it an error."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool = False
    reason: str | None = None  # why it ended, when the target knows better than the exit code (OOM, killed)

    def check(self) -> CommandResult:
        if self.rc != 0:
            tail = self.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
            raise CommandFailed(f"command {self.argv[0]!r} exited {self.rc}: {tail[0]}")
        return self


LineHandler = Callable[[str], None]


class Session(Protocol):
    """A live, provisioned target."""

    workdir: str

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult: ...

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        """Run argv, handing each stdout line to on_line as it arrives; stderr is kept as a tail."""
        ...

    def put(self, local: Path, remote: str) -> None: ...


class Target(Protocol):
    name: str

    def provision(self) -> AbstractContextManager[Session]:
        """Bring the boundary up; always tears down, also on KeyboardInterrupt."""
        ...

    def startup_phases(self) -> dict[str, float]:
        """Seconds spent in each phase of the latest provision (e.g. create, start, boot, ssh_ready)."""
        ...


@dataclass
class PhaseClock:
    """Records consecutive phases of a provision, measured from the controller."""

    phases: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds


class Tail:
    """Keeps the last TAIL_BYTES of a stream: enough to explain a crash, bounded for any output size."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.buf = ""

    def add(self, text: str) -> None:
        self.buf = (self.buf + text)[-self.limit :]

    def __str__(self) -> str:
        return self.buf


def owner_label() -> str:
    """host:pid of this harness, stored with everything it creates so a sweep can tell live runs from dead ones."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Is the harness named by `host:pid` still running? Another host's cannot be judged, so it counts as alive."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# kind → (module:Class, extra to install)
_KINDS: dict[str, tuple[str, str | None]] = {}
# extra → what installing it needs from the system (libvirt-python is an sdist compiled against libvirt)
_SYSTEM_NEEDS = {"libvirt": "apt-get install libvirt-dev pkg-config gcc python3-dev"}


def register_kind(kind: str, ref: str, extra: str | None = None) -> None:
    if kind in _KINDS:
        raise ValueError(f"target kind {kind!r} registered twice")
    _KINDS[kind] = (ref, extra)


register_kind("local", "benchbed.targets.local:LocalTarget")
register_kind("ssh", "benchbed.targets.ssh:SshTarget", extra="ssh")
register_kind("docker", "benchbed.targets.docker:DockerTarget", extra="docker")
register_kind("libvirt", "benchbed.targets.libvirt:LibvirtTarget", extra="libvirt")
register_kind("ns", "benchbed.targets.ns:NsTarget")


def install_hint(extra: str) -> str:
    """How to get an extra, system packages first where pip alone cannot build it."""
    pip = f"pip install 'benchbed[{extra}]'"
    system = _SYSTEM_NEEDS.get(extra)
    return f"{system}, then {pip} or, in a checkout, make install" if system else pip


def kinds() -> list[str]:
    return sorted(_KINDS)


def kind_class(name: str, spec: Any) -> Any:
    """The implementation of spec.kind, importing its module (and optional dependency) only now."""
    try:
        ref, extra = _KINDS[spec.kind]
    except KeyError as err:
        raise TargetError(f"target {name!r}: unknown kind {spec.kind!r} (known: {', '.join(kinds())})") from err
    module_name, _, cls_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        what = f"target {name!r} (kind {spec.kind}) unavailable: Python module {err.name!r} is not installed"
        raise TargetError(what, hint=install_hint(extra) if extra else None) from err
    return getattr(module, cls_name)


def make_target(name: str, spec: Any, run_id: str) -> Target:
    target: Target = kind_class(name, spec)(name, spec, run_id)
    return target


TICK_S = 0.25  # longest the main thread blocks in C, so Ctrl-C is handled within this even for a silent agent


def pumped(chunks: Iterator[bytes], abort: Callable[[], None]) -> Iterator[bytes]:
    """Read `chunks` in a helper thread and hand them over here, waking every TICK_S.

    A process-directed SIGINT may land on any thread; Python then runs the handler in the main thread only
    when that thread next executes bytecode. A main thread parked in a C read without timeout (the Docker SDK
    polls forever) would not notice Ctrl-C until the agent wrote again. `abort` unblocks the reader on exit.
    """
    box: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=256)

    def pump() -> None:
        try:
            for chunk in chunks:
                box.put(chunk)
        except BaseException as err:  # handed to the consumer, which re-raises it in its own thread
            box.put(err)
        finally:
            box.put(None)

    reader = threading.Thread(target=pump, name="benchbed-pump", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = box.get(timeout=TICK_S)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if reader.is_alive():
            abort()
            while reader.is_alive():  # drain so a blocked put() lets the pump see the end of its stream
                with contextlib.suppress(queue.Empty):
                    box.get(timeout=TICK_S)
                reader.join(0)


def collect_stdout(stream: Callable[..., CommandResult], argv: Sequence[str], timeout: float | None) -> CommandResult:
    """Session.run in terms of Session.stream: the same process handling, stdout kept (bounded) instead of streamed."""
    out = Tail(limit=1 << 20)

    def keep(line: str) -> None:
        out.add(line + "\n")

    return dataclasses.replace(stream(argv, keep, timeout=timeout), stdout=str(out))


def iter_lines(chunks: Iterator[bytes], on_line: LineHandler) -> str:
    """Split a byte stream into lines for on_line; returns a trailing partial line, if any."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            on_line(line.decode("utf-8", errors="replace"))
    return pending.decode("utf-8", errors="replace")
