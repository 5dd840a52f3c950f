"""`ns`: this host's process in fresh Linux namespaces — a container runtime's isolation, without an engine or image.

Per instance a *holder* starts in new namespaces (util-linux `unshare`, or bubblewrap): a shell that says it runs,
brings the loopback up as a runtime does, says `ready` and waits on its stdin. Every command then joins the holder's
namespaces with `nsenter`, as `docker exec` joins a container's: the same python3 from PATH as `local`, so a
local-vs-ns ratio is the boundary's alone. There are no cgroup limits, no seccomp filter and no image here.

Teardown kills pid 1 of the namespaces (the kernel kills everything else inside, the tool reaps it), with Ctrl-C
held until it is done (nsproc.held_signals). Should the harness die instead, the holder reads EOF on its stdin
and exits (bwrap also gets --die-with-parent). Workdirs are named benchbed-ns-<harness pid>-<run id>-*, and every
process of an instance has its workdir on its command line, so `sweep` can tell a dead run's leftovers from a live
one's.

Phases: workdir · namespaces (spawn → the holder runs inside all of them) · loopback (`ip link set lo up`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from benchbed import boundary
from benchbed.errors import ProvisionError
from benchbed.interrupts import held_signals
from benchbed.owner import owner_alive
from benchbed.targets.base import CommandResult, Endpoint, Kind, LineHandler, PhaseClock, TargetImpl
from benchbed.targets.local import LocalSession
from benchbed.targets.nsproc import READY_TIMEOUT_S, Holder, HolderFailed, namespaces_of
from benchbed.targets.spec import TargetBase

Namespace = Literal["user", "mount", "pid", "net", "ipc", "uts"]
ALL_NAMESPACES: tuple[Namespace, ...] = ("user", "mount", "pid", "net", "ipc", "uts")


class NsTarget(TargetBase):
    """This host's process in fresh Linux namespaces: a container runtime's isolation without an engine or an
    image, on the same userland as `local`, so the ratio to `local` is the boundary's alone."""

    kind: Literal["ns"]
    namespaces: list[Namespace] = Field(
        default_factory=lambda: list(ALL_NAMESPACES),
        min_length=1,
        description="Namespaces created per instance; `user` is added when not root (needed to create the others)",
    )
    tool: Literal["auto", "unshare", "bwrap"] = Field(
        "auto", description="unshare (util-linux) or bubblewrap; auto: bwrap when installed, else unshare"
    )

    @field_validator("namespaces")
    @classmethod
    def _unique(cls, value: list[Namespace]) -> list[Namespace]:
        if len(set(value)) != len(value):
            raise ValueError(f"namespaces {value} lists one twice")
        return value

    @model_validator(mode="after")
    def _bwrap_mounts(self) -> NsTarget:
        if self.tool == "bwrap" and "mount" not in self.namespaces:
            raise ValueError("bwrap always creates a mount namespace: list `mount`, or use tool: unshare")
        return self


class NsKind(Kind):
    name = "ns"
    boundary_class = boundary.CONTAINER
    spec = NsTarget
    impl = "benchbed.targets.ns:NsProvisioner"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        return sweep(everything=everything)  # one host, one temp dir: the specs add nothing

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """This host's leftovers are swept unless a targets file says which kinds were used."""
        return None if targets_given else NsTarget(kind="ns")


NS_PREFIX = "benchbed-ns-"
LABEL = "benchbed-ns"  # the holder shell's $0: `ps` shows what it is
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


def effective_namespaces(spec: NsTarget, euid: int | None = None) -> tuple[str, ...]:
    """The namespaces an instance gets, in a fixed order: those listed, plus `user` when not root (without it an
    unprivileged process may create none of the others)."""
    wanted = set(spec.namespaces)
    if (os.geteuid() if euid is None else euid) != 0:
        wanted.add("user")
    return tuple(n for n in ALL_NAMESPACES if n in wanted)


def choose_tool(spec: NsTarget, namespaces: Sequence[str]) -> str:
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

    def __init__(self, workdir: str, enter: Sequence[str], own_net: bool = False) -> None:
        super().__init__(workdir)
        self.enter = list(enter)
        self.own_net = own_net  # a private network namespace: its loopback is not the controller's

    def serve_net(self) -> dict[str, Any]:
        return {"bind": "127.0.0.1", "port": None} if self.own_net else super().serve_net()

    def endpoint(self, port: int) -> AbstractContextManager[Endpoint | None]:
        return contextlib.nullcontext(None) if self.own_net else super().endpoint(port)

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        return super().stream([*self.enter, "--", *argv], on_line, timeout=timeout)


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


class NsProvisioner(TargetImpl):
    def __init__(self, name: str, spec: NsTarget, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self.spec: NsTarget = spec
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
                with held_signals():  # a Ctrl-C between mkdir and this assignment would leak the directory
                    workdir = tempfile.mkdtemp(prefix=f"{NS_PREFIX}{os.getpid()}-{self.run_id}-")
            except OSError as err:
                raise self.error(ProvisionError, f"cannot create a temp dir: {err.strerror}") from err
            clock.add("workdir", time.perf_counter() - t)
            namespaces = effective_namespaces(self.spec)
            tool = choose_tool(self.spec, namespaces)
            holder = Holder(holder_argv(tool, namespaces, workdir))
            pid, loopback = self._start(holder, tool, namespaces)
            self._described = self._fingerprint(pid, tool, namespaces, loopback)
            yield NsSession(workdir, enter_argv(pid, namespaces, workdir), own_net="net" in namespaces)
        finally:
            with held_signals():  # teardown runs to its end; a Ctrl-C landing in it is raised afterwards
                if holder is not None:
                    holder.stop()
                if workdir is not None:
                    shutil.rmtree(workdir, ignore_errors=True)

    def _start(self, holder: Holder, tool: str, namespaces: Sequence[str]) -> tuple[int, str]:
        """Start the holder and wait until it runs inside; returns its inner pid and the loopback's state."""
        for exe, package in ((tool, "bubblewrap" if tool == "bwrap" else "util-linux"), ("nsenter", "util-linux")):
            if shutil.which(exe) is None:
                hint = f"apt-get install {package}" + (", or tool: unshare" if tool == "bwrap" else "")
                raise self.error(ProvisionError, f"{exe} not found on PATH", hint=hint)
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
            raise self.error(
                ProvisionError,
                f"cannot create namespaces ({' '.join(namespaces)}) with {tool}: {message}"
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
            raise self.error(
                ProvisionError, f"{tool} gave namespaces {' '.join(new) or 'none'}, expected {' '.join(expected)}"
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
        shutil.rmtree(workdir, ignore_errors=True)
        removed.append(f"ns workdir {workdir}" + (f" and {len(pids)} process(es)" if pids else ""))
    return removed
