"""`podman` through its Docker-compatible API: the docker kind's provisioner and session over a private
`podman system service` (or `podman_host`), with explicit ulimits and podman's own words in errors.

The private service runs in its own session (a terminal's Ctrl-C must not stop it before the containers are torn
down) with its socket in `$TMPDIR/benchbed-podman-<pid>-*/`, so `benchbed cleanup` can tell a SIGKILLed harness's
service from a live one, stop it, and remove the containers it left (labelled like docker's).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import docker
import docker.errors
import docker.types

from benchbed.errors import ProvisionError
from benchbed.owner import pid_alive
from benchbed.targets.dockerargs import create_args
from benchbed.targets.dockerengine import DockerProvisioner
from benchbed.targets.dockersweep import sweep_with

if TYPE_CHECKING:
    from benchbed.targets.podman import PodmanTarget as PodmanSpec

SERVICE_PREFIX = "benchbed-podman-"
_SERVICE_DIR = re.compile(rf"(/(?:[^/]+/)*{SERVICE_PREFIX}(\d+)-[^/\s]+)")
START_TIMEOUT_S = 30.0
INSTALL_HINT = "apt-get install podman (scripts/setup-runtimes), or set podman_host to a podman API socket"


class PodmanService:
    """`podman system service` on a private socket, for as long as this harness needs it."""

    def __init__(self, binary: str, where: str) -> None:
        self.binary = binary
        self.where = where
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0

    def start(self) -> str:
        """Start the service and wait for its socket; returns its URL."""
        found = shutil.which(self.binary)
        if found is None:
            raise ProvisionError(f"{self.where}: podman not found ({self.binary!r} is not on PATH)", hint=INSTALL_HINT)
        t0 = time.perf_counter()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{SERVICE_PREFIX}{os.getpid()}-"))
        sock = self.dir / "api.sock"
        with (self.dir / "service.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [found, "system", "service", "--time=0", f"unix://{sock}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop()
                raise ProvisionError(
                    f"{self.where}: `podman system service` did not come up ({tail or 'no output'})",
                    hint=INSTALL_HINT,
                )
            time.sleep(0.02)
        self.started_s = time.perf_counter() - t0
        return f"unix://{sock}"

    def _log_tail(self) -> str:
        with suppress(OSError):
            if self.dir:
                return (self.dir / "service.log").read_text(errors="replace").strip()[-300:]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def connect(url: str, where: str) -> docker.DockerClient:
    """A client of podman's compatible API; unreachable is one line naming the socket."""
    client = docker.DockerClient(base_url=url)
    try:
        client.ping()
    except docker.errors.DockerException as err:
        client.close()
        raise ProvisionError(f"{where}: podman API not reachable at {url}", hint=INSTALL_HINT) from err
    return client


LIMIT_ROWS = {"nofile": "Max open files", "nproc": "Max processes"}


def host_ulimits(pid: int | str = "self") -> dict[str, str]:
    """The hard nofile and nproc limits podman's own process has (its service's, or this harness's), as soft=hard:
    what it may set on a container on cgroup v1, hybrid and v2 hosts alike. Its built-in defaults (about a million
    files) exceed them on some hosts: 'error setting rlimit … operation not permitted'."""
    out = {}
    try:
        rows = Path(f"/proc/{pid}/limits").read_text().splitlines()
    except OSError:
        rows = []
    for name, row in LIMIT_ROWS.items():
        hard = next((line[len(row) :].split()[1] for line in rows if line.startswith(row)), None)
        if hard is None:
            res = resource.RLIMIT_NOFILE if name == "nofile" else resource.RLIMIT_NPROC
            value = resource.getrlimit(res)[1]
            hard = "-1" if value == resource.RLIM_INFINITY else str(value)
        out[name] = f"{'-1' if hard == 'unlimited' else hard}:{'-1' if hard == 'unlimited' else hard}"
    return out


def ulimit_args(limits: dict[str, str]) -> list[docker.types.Ulimit]:
    out = []
    for name, text in limits.items():
        soft, _, hard = str(text).partition(":")
        out.append(docker.types.Ulimit(name=name, soft=int(soft), hard=int(hard or soft)))
    return out


class PodmanProvisioner(DockerProvisioner):
    engine = "podman"
    runtime_config = "[engine.runtimes] in containers.conf"
    load_hint = "copy it from docker (scripts/setup-runtimes --load IMAGE) or `podman pull`, or set pull: missing"

    def __init__(self, name: str, spec: PodmanSpec, run_id: str) -> None:
        super().__init__(name, cast(Any, spec), run_id)  # the docker provisioner reads only the shared keys
        self.pspec = spec
        self._service: PodmanService | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            where = f"target {self.name!r}"
            url = self.pspec.podman_host
            if url is None:
                self._service = PodmanService(self.pspec.podman, where)
                url = self._service.start()
                self._clock.add("service", self._service.started_s)  # once per run: the daemonless engine's setup
            self._client = connect(url, where)
        return self._client

    @property
    def local_engine(self) -> bool:
        return (self.pspec.podman_host or "unix://").startswith("unix://")

    def create_args(self) -> dict[str, Any]:
        args = create_args(self.pspec, self.name, self.run_id)
        limits = self._limits()
        if limits:
            args["ulimits"] = ulimit_args(limits)
        return args

    def _limits(self) -> dict[str, str] | None:
        """Explicit ulimits, or those of the private service's own process (what podman may grant)."""
        if self.pspec.ulimits is not None:
            return self.pspec.ulimits
        proc = self._service.proc if self._service else None
        if proc is not None:
            return host_ulimits(proc.pid)
        return host_ulimits() if self.local_engine else None

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        own = facts.get(self.engine)
        if isinstance(own, dict):
            own["service"] = "private" if self._service else self.pspec.podman_host
            own["rootless"] = os.geteuid() != 0 if self._service else None
            own["ulimits"] = self._limits()
        return facts

    def close(self) -> None:
        super().close()
        if self._service is not None:
            self._service.stop()
            self._service = None


# ── leftovers of dead runs ─────────────────────────────────────────────────────────────────────────────────
def sweep(url: str | None, binary: str = "podman", *, everything: bool = False) -> list[str]:
    """Remove benchbed-labelled podman containers whose harness is gone (or all), then stop the private API
    services of dead harnesses."""
    service = None
    if url is None:
        if shutil.which(binary) is None:
            return []
        service = PodmanService(binary, "cleanup")
        url = service.start()
    try:
        client = connect(url, "cleanup")
        try:
            removed = [f"podman {line}" for line in sweep_with(client, everything)]
        finally:
            client.close()
    finally:
        if service is not None:
            service.stop()
    return removed + _stop_dead_services(everything)


def _stop_dead_services(everything: bool) -> list[str]:
    dirs: dict[str, list[int]] = {
        str(p): [] for p in Path(tempfile.gettempdir()).glob(f"{SERVICE_PREFIX}*") if p.is_dir()
    }
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"service" not in args:
            continue
        for arg in args:
            m = _SERVICE_DIR.search(arg.decode("utf-8", "replace"))
            if m:
                dirs.setdefault(m.group(1), []).append(int(entry.name))
    removed = []
    for path, pids in sorted(dirs.items()):
        m = _SERVICE_DIR.search(path)
        if m is None or (not everything and pid_alive(int(m.group(2)))):
            continue
        for pid in pids:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(f"podman API service {path}" + (f" (pid {', '.join(map(str, pids))})" if pids else ""))
    return removed
