"""`ns`: this host's process in fresh Linux namespaces — a container runtime's isolation, without an engine or image.

Per instance a *holder* starts in new namespaces (util-linux `unshare`, or bubblewrap): a shell that says it runs,
brings the loopback up as a runtime does, says `ready` and waits on its stdin. Every command then joins the holder's
namespaces with `nsenter`, as `docker exec` joins a container's: the same python3 from PATH as `local`, so a
local-vs-ns ratio is the boundary's alone. There are no cgroup limits, no seccomp filter and no image here.

Teardown kills the holder's process group; pid 1 of the pid namespace dying makes the kernel kill everything
inside. Should the harness die instead, the holder reads EOF on its stdin and exits (bwrap also gets
--die-with-parent). Workdirs are named benchbed-ns-<harness pid>-<run id>-*, and every process of an instance has
its workdir on its command line, so `sweep` can tell a dead run's leftovers from a live one's.

Phases: workdir · namespaces (spawn → the holder runs inside all of them) · loopback (`ip link set lo up`).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchbed.config import ALL_NAMESPACES
from benchbed.config import NsTarget as NsSpec
from benchbed.errors import ProvisionError
from benchbed.targets.base import TICK_S, CommandResult, LineHandler, PhaseClock, owner_alive
from benchbed.targets.local import LocalSession, _remove_tree

NS_PREFIX = "benchbed-ns-"
LABEL = "benchbed-ns"  # the holder shell's $0: `ps` shows what it is
READY_TIMEOUT_S = 30.0
PROC_NAME = {"user": "user", "mount": "mnt", "pid": "pid", "net": "net", "ipc": "ipc", "uts": "uts"}
UNSHARE_FLAGS = {
    "user": ("--user", "--map-root-user"),
    "mount": ("--mount",),
    "pid": ("--pid",),
    "net": ("--net",),
    "ipc": ("--ipc",),
    "uts": ("--uts",),
}
BWRAP_FLAGS = {
    "user": ("--unshare-user", "--uid", "0", "--gid", "0"),
    "mount": (),  # bwrap always has its own mount namespace
    "pid": ("--unshare-pid",),
    "net": ("--unshare-net",),
    "ipc": ("--unshare-ipc",),
    "uts": ("--unshare-uts",),
}
LOOPBACK = (
    "if command -v ip >/dev/null 2>&1; then ip link set lo up 2>/dev/null; "
    'case "$(ip -o link show lo 2>/dev/null)" in *"<LOOPBACK,UP"*) lo=up;; *) lo=down;; esac; else lo=unknown; fi; '
)
_WORKDIR_RE = re.compile(rf"(/(?:[^/]+/)*{NS_PREFIX}(\d+)-[^/]+)")


def effective_namespaces(spec: NsSpec, euid: int | None = None) -> tuple[str, ...]:
    """The namespaces an instance gets, in a fixed order: those listed, plus `user` when not root (without it an
    unprivileged process may create none of the others)."""
    wanted = set(spec.namespaces)
    if (os.geteuid() if euid is None else euid) != 0:
        wanted.add("user")
    return tuple(n for n in ALL_NAMESPACES if n in wanted)


def choose_tool(spec: NsSpec, namespaces: Sequence[str]) -> str:
    if spec.tool != "auto":
        return spec.tool
    return "bwrap" if "mount" in namespaces and shutil.which("bwrap") else "unshare"


def holder_argv(tool: str, namespaces: Sequence[str], workdir: str) -> list[str]:
    """The holder's command line: `tool` around a shell that prints `ns`, brings lo up, prints `ready lo=STATE`."""
    script = "echo ns; " + (LOOPBACK if "net" in namespaces else "lo=host; ") + 'echo "ready lo=$lo"; read _ || true'
    if tool == "bwrap":
        argv = ["bwrap", "--die-with-parent", "--bind", "/", "/", "--dev-bind", "/dev", "/dev"]
        argv += ["--proc", "/proc"] if "pid" in namespaces else []
        argv += [flag for n in namespaces for flag in BWRAP_FLAGS[n]]
    else:
        argv = ["unshare", "--fork", "--kill-child", *(flag for n in namespaces for flag in UNSHARE_FLAGS[n])]
        argv += ["--mount-proc"] if {"pid", "mount"} <= set(namespaces) else []
    return [*argv, "--", "sh", "-c", script, LABEL, workdir]


def enter_argv(pid: int, namespaces: Sequence[str], workdir: str) -> list[str]:
    """nsenter into the holder's namespaces (nsenter's options are named like ours). Credentials are kept: the
    caller's uid is the one mapped to root inside, and an unprivileged user namespace refuses setgroups."""
    return ["nsenter", f"--target={pid}", *(f"--{n}" for n in namespaces), "--preserve-credentials", f"--wd={workdir}"]


class NsSession(LocalSession):
    """A LocalSession whose commands first join the holder's namespaces."""

    def __init__(self, workdir: str, enter: Sequence[str]) -> None:
        super().__init__(workdir)
        self.enter = list(enter)

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        return super().stream([*self.enter, "--", *argv], on_line, timeout=timeout)


class HolderFailed(Exception):
    """The holder ended (or never answered) before it ran inside its namespaces."""


class Holder:
    """The process whose namespaces every command of one instance joins; it lives as long as the instance."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None
        self.inner: int | None = None
        self._buf = b""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,  # its EOF is the holder's signal to exit, even when the harness is SIGKILLed
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in a terminal reaches the harness, which tears down in order
        )

    def expect(self, word: str, deadline: float) -> str:
        """Wait for the next stdout line; it must start with `word`. Returns the rest of the line."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HolderFailed(f"no {word!r} from the holder within {READY_TIMEOUT_S:g} s")
            ready, _, _ = select.select([fd], [], [], min(TICK_S, left))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise HolderFailed(self._stderr())
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        text = line.decode("utf-8", "replace")
        if not text.startswith(word):
            raise HolderFailed(f"unexpected holder output {text[:200]!r}")
        return text[len(word) :].strip()

    def _stderr(self) -> str:
        """The tool's last error line. Read with a deadline: a child that outlived the tool may hold the pipe."""
        assert self.proc is not None
        assert self.proc.stderr is not None
        fd, text, end = self.proc.stderr.fileno(), b"", time.monotonic() + 2.0
        while time.monotonic() < end and select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            text += chunk
        lines = text.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "the holder ended without a word"

    def inner_pid(self) -> int:
        """The tool's child: it (and all it started) runs inside every new namespace."""
        assert self.proc is not None
        pid = self.proc.pid
        with suppress(OSError, ValueError, IndexError):
            self.inner = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
            return self.inner
        for stat in Path("/proc").glob("[0-9]*/stat"):  # kernels without CONFIG_PROC_CHILDREN
            with suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                    self.inner = int(stat.parent.name)
                    return self.inner
        raise HolderFailed("the holder's child process is gone")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        if self.inner is not None:  # pid 1 inside first: the kernel empties the namespace, the tool reaps it
            with suppress(ProcessLookupError, PermissionError):
                os.kill(self.inner, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if proc.poll() is None:  # never got that far, or the tool hangs: the whole group
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self.inner is not None:
            _wait_gone(self.inner)


def _wait_gone(pid: int, limit_s: float = 5.0) -> None:
    """Until `pid` has exited (gone, or a zombie its new parent has yet to reap), for at most limit_s."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.005)


def namespaces_of(pid: int | str) -> dict[str, str]:
    """{name: "net:[4026532255]"} for every namespace type the kernel shows (the *_for_children links left out)."""
    base = Path(f"/proc/{pid}/ns")
    return {p.name: str(p.readlink()) for p in base.iterdir() if not p.name.endswith("_for_children")}


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def diagnose(message: str, namespaces: Sequence[str], euid: int) -> tuple[str, str]:
    """(why namespaces cannot be created here, how to fix it), from the tool's error and the host's switches."""
    if "user" in namespaces:
        drop = ", or as root list `namespaces` without `user`"
        if _sysctl("user/max_user_namespaces") == "0":
            return (
                "user namespaces are disabled (user.max_user_namespaces = 0)",
                "sysctl -w user.max_user_namespaces=15000" + drop,
            )
        if euid != 0 and _sysctl("kernel/unprivileged_userns_clone") == "0":
            return "unprivileged user namespaces are disabled", "sysctl -w kernel.unprivileged_userns_clone=1" + drop
        if euid != 0 and _sysctl("kernel/apparmor_restrict_unprivileged_userns") == "1":
            return (
                "AppArmor restricts unprivileged user namespaces",
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" + drop,
            )
    if "ENOSPC" in message or "No space left" in message:
        return "a namespace limit is reached (nesting depth or /proc/sys/user/max_*_namespaces)", (
            "raise the limit in /proc/sys/user/, or run benchbed one level up"
        )
    if "not permitted" in message or "EPERM" in message:
        return "this process may not create namespaces (a container without CAP_SYS_ADMIN, or a seccomp filter)", (
            "run benchbed on the host, or in a container started with --privileged; `kind: local` needs none"
        )
    return "", "see docs/targets-ns.md"


class NsTarget:
    def __init__(self, name: str, spec: NsSpec, run_id: str) -> None:
        self.name = name
        self.spec = spec
        self.run_id = run_id
        self._clock = PhaseClock()
        self._described: dict[str, Any] = {}
        self._versions: dict[str, str] = {}

    @contextmanager
    def provision(self) -> Iterator[NsSession]:
        self._clock = clock = PhaseClock()
        workdir: str | None = None
        holder: Holder | None = None
        try:
            t = time.perf_counter()
            try:
                workdir = tempfile.mkdtemp(prefix=f"{NS_PREFIX}{os.getpid()}-{self.run_id}-")
            except OSError as err:
                raise ProvisionError(f"target {self.name!r}: cannot create a temp dir: {err.strerror}") from err
            clock.add("workdir", time.perf_counter() - t)
            namespaces = effective_namespaces(self.spec)
            tool = choose_tool(self.spec, namespaces)
            holder = Holder(holder_argv(tool, namespaces, workdir))
            pid, loopback = self._start(holder, tool, namespaces)
            self._described = self._fingerprint(pid, tool, namespaces, loopback)
            yield NsSession(workdir, enter_argv(pid, namespaces, workdir))
        finally:
            if holder is not None:
                holder.stop()
            if workdir is not None:
                _remove_tree(workdir)

    def _start(self, holder: Holder, tool: str, namespaces: Sequence[str]) -> tuple[int, str]:
        """Start the holder and wait until it runs inside; returns its inner pid and the loopback's state."""
        for exe, package in ((tool, "bubblewrap" if tool == "bwrap" else "util-linux"), ("nsenter", "util-linux")):
            if shutil.which(exe) is None:
                hint = f"apt-get install {package}" + (", or tool: unshare" if tool == "bwrap" else "")
                raise ProvisionError(f"target {self.name!r}: {exe} not found on PATH", hint=hint)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            t = time.perf_counter()
            holder.start()
            holder.expect("ns", deadline)
            self._clock.add("namespaces", time.perf_counter() - t)
            t = time.perf_counter()
            loopback = holder.expect("ready lo=", deadline)
            if "net" in namespaces:
                self._clock.add("loopback", time.perf_counter() - t)
            return holder.inner_pid(), loopback
        except (HolderFailed, OSError) as err:
            message = str(err)
            cause, fix = diagnose(message, namespaces, os.geteuid())
            raise ProvisionError(
                f"target {self.name!r}: cannot create namespaces ({' '.join(namespaces)}) with {tool}: {message}"
                + (f"; {cause}" if cause else ""),
                hint=fix,
            ) from err

    def _fingerprint(self, pid: int, tool: str, namespaces: Sequence[str], loopback: str) -> dict[str, Any]:
        """The namespaces really in effect: the holder's next to this process's own. A requested one that is still
        shared (or an extra one) is an error, never a silently weaker boundary."""
        inside, outside = namespaces_of(pid), namespaces_of("self")
        new = sorted(n for n, link in inside.items() if link != outside.get(n))
        expected = sorted(PROC_NAME[n] for n in namespaces)
        if new != expected:
            raise ProvisionError(
                f"target {self.name!r}: {tool} gave namespaces {' '.join(new) or 'none'}, expected {' '.join(expected)}"
            )
        return {
            "ns": {
                "tool": self._version(tool),
                "new": " ".join(new),
                "shared_with_host": " ".join(sorted(set(inside) - set(new))),
                "loopback": loopback,
                "harness_euid": os.geteuid(),
            }
        }

    def _version(self, tool: str) -> str:
        if tool not in self._versions:
            try:
                res = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10, check=False)
                self._versions[tool] = (res.stdout.strip().splitlines() or [tool])[0]
            except (OSError, subprocess.TimeoutExpired):
                self._versions[tool] = tool
        return self._versions[tool]

    def startup_phases(self) -> dict[str, float]:
        return dict(self._clock.phases)

    def describe(self) -> dict[str, Any]:
        """Controller-side facts for the fingerprint: tool, namespaces in effect, loopback state."""
        return dict(self._described)


# ── cleanup ───────────────────────────────────────────────────────────────────────────────────────────────
def _processes_by_workdir() -> dict[str, list[int]]:
    """Every process (but this one) whose command line names an ns workdir: holders, nsenter and agents."""
    out: dict[str, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found = {m.group(1) for arg in args if (m := _WORKDIR_RE.search(arg.decode("utf-8", "replace")))}
        for workdir in found:
            out.setdefault(workdir, []).append(int(entry.name))
    return out


def sweep(*, everything: bool = False, tmp: str | None = None) -> list[str]:
    """Kill the processes and remove the workdirs of ns instances whose harness is gone (or all of them)."""
    procs = _processes_by_workdir()
    base = Path(tmp or tempfile.gettempdir())
    dirs = {str(p) for p in base.glob(f"{NS_PREFIX}*") if p.is_dir()} | set(procs)
    removed: list[str] = []
    host = socket.gethostname()
    for workdir in sorted(dirs):
        m = _WORKDIR_RE.search(workdir)
        if m is None or (not everything and owner_alive(f"{host}:{m.group(2)}")):
            continue
        pids = procs.get(workdir, [])
        for pid in pids:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _remove_tree(workdir)
        removed.append(f"ns workdir {workdir}" + (f" and {len(pids)} process(es)" if pids else ""))
    return removed
