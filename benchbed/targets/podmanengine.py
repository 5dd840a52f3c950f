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
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import docker
import docker.errors
import docker.types
import requests

from benchbed.boundary import SANDBOXED, runtime_class
from benchbed.errors import ProvisionError
from benchbed.owner import pid_alive
from benchbed.targets.dockerargs import create_args
from benchbed.targets.dockerengine import DockerProvisioner
from benchbed.targets.dockerruntime import check_known, engine_runtimes
from benchbed.targets.dockersweep import sweep_with

if TYPE_CHECKING:
    from benchbed.targets.podman import PodmanTarget as PodmanSpec

SERVICE_PREFIX = "benchbed-podman-"
_SERVICE_DIR = re.compile(rf"(/(?:[^/]+/)*{SERVICE_PREFIX}(\d+)-[^/\s]+)")
START_TIMEOUT_S = 30.0
INSTALL_HINT = "apt-get install podman (scripts/setup-runtimes), or set podman_host to a podman API socket"


class PodmanService:
    """`podman system service` on a private socket, for as long as this harness needs it. Its runtime (and that
    runtime's flags) is the service's own: podman's Docker-compatible API ignores a container's `Runtime`."""

    def __init__(self, binary: str, where: str, runtime: str | None = None, flags: Sequence[str] = ()) -> None:
        self.binary = binary
        self.where = where
        self.runtime = runtime
        self.flags = list(flags)
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
        chosen = [*(["--runtime", self.runtime] if self.runtime else []), *(f"--runtime-flag={f}" for f in self.flags)]
        with (self.dir / "service.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [found, *chosen, "system", "service", "--time=0", f"unix://{sock}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise ProvisionError(
                    f"{self.where}: `podman system service` did not come up ({tail or 'no output'})",
                    hint=INSTALL_HINT,
                )
            time.sleep(0.02)
        self.started_s = time.perf_counter() - t0
        return f"unix://{sock}"

    def log_tail(self, lines: int = 20) -> str:
        """The service's last words on one line (a runtime's own errors land here, not in the API's answer)."""
        with suppress(OSError):
            if self.dir:
                text = (self.dir / "service.log").read_text(errors="replace")
                return " / ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])[-300:]
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


def service_runtime(client: docker.DockerClient) -> dict[str, Any]:
    """The OCI runtime podman's service runs every container on (libpod's own info: name, path, version); empty
    when the service will not say."""
    try:
        res = client.api.get(f"{client.api.base_url}/v4.0.0/libpod/info", timeout=30)
        res.raise_for_status()
        return dict(res.json().get("host", {}).get("ociRuntime") or {})
    except (requests.exceptions.RequestException, ValueError, AttributeError):
        return {}


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
    runsc_network_hint = "give this target `runtime_flags: {runsc: [network=none]}` (docs/runtimes.md)"
    load_hint = "copy it from docker (scripts/setup-runtimes --load IMAGE) or `podman pull`, or set pull: missing"

    def __init__(self, name: str, spec: PodmanSpec, run_id: str) -> None:
        super().__init__(name, cast(Any, spec), run_id)  # the docker provisioner reads only the shared keys
        self.pspec = spec
        self._service: PodmanService | None = None
        self._runtime: dict[str, Any] = {}

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            where = f"target {self.name!r}"
            url = self.pspec.podman_host or self._start_service(where)
            client = connect(url, where)
            self._runtime = service_runtime(client)
            try:
                self._check_runtime(url)
            except ProvisionError:
                client.close()
                raise
            self._client = client
        return self._client

    def _start_service(self, where: str) -> str:
        """The private service, on this target's runtime: podman's compatible API ignores a per-container one."""
        runtime = self.pspec.oci_runtime
        service = PodmanService(self.pspec.podman, where, runtime, self.pspec.runtime_flags.get(runtime or "", ()))
        try:
            url = service.start()
        except ProvisionError:
            if runtime:
                self._refuse_unknown(runtime, where)
            raise
        self._service = service
        self._clock.add("service", service.started_s)  # once per run: the daemonless engine's setup
        return url

    def _refuse_unknown(self, runtime: str, where: str) -> None:
        """A service on an unknown runtime does not start; a plain one says which runtimes podman has."""
        plain = PodmanService(self.pspec.podman, where)
        try:
            client = connect(plain.start(), where)
            try:
                registered = engine_runtimes(client)[0]
            finally:
                client.close()
        finally:
            plain.stop()
        check_known(self, runtime, registered, self.runtime_config)

    def engine_log_tail(self) -> str:
        """What the runtime said when a container did not start (start_error adds it to the one line)."""
        return self._service.log_tail(lines=1) if self._service else ""

    def _check_runtime(self, url: str) -> None:
        """Never a container on another runtime than the target names (the report would call runc a sandbox)."""
        want, got = self.pspec.oci_runtime, self._runtime.get("name")
        if want is None or got == want or (got is None and self._service is not None):
            return
        raise self.error(
            ProvisionError,
            f"podman's API service at {url} runs containers on runtime {got or 'unknown'!r}, not {want!r} "
            "(its Docker-compatible API cannot choose a runtime per container)",
            hint=f"drop podman_host (benchbed then starts a service per runtime), or start that service as "
            f"`podman --runtime {want} system service`",
        )

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
            if self._runtime.get("name"):
                name = str(self._runtime["name"])
                own["runtime"] = {
                    "name": name,
                    "default": self.pspec.oci_runtime is None,
                    "path": self._runtime.get("path"),
                    "args": [f"--{f}" for f in self.pspec.runtime_flags.get(name, [])],
                    "version": next(iter(str(self._runtime.get("version") or "").splitlines()), None),
                    "sandboxed": runtime_class(name) == SANDBOXED,
                }
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
