"""`docker`: a fresh container per instance through the Docker SDK — the container boundary under test.

create → start → first exec (makes the workdir and proves python is there) → put the agent (over an exec: see
`dockership`) →
exec the agent, streaming → remove. Every container carries `benchbed.*` labels so a crashed harness's leftovers
can be found and removed (`benchbed cleanup`, and the sweep at the start of every run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests.exceptions

from benchbed.errors import ProvisionError, TransportError
from benchbed.interrupts import held_signals
from benchbed.targets.base import CommandResult, Endpoint, LineHandler, PhaseClock, SessionImpl, Tail, TargetImpl
from benchbed.targets.dockerargs import (
    create_args,
    gpu_requests,
    not_ready,
    start_error,
)
from benchbed.targets.dockerruntime import check_known, engine_runtimes, runtime_facts
from benchbed.targets.dockership import ShipError, send_file
from benchbed.targets.streams import iter_lines, pumped

if TYPE_CHECKING:  # the kind module imports this one on use; only the type comes back
    from benchbed.targets.docker import DockerTarget as DockerSpec

log = logging.getLogger(__name__)

MKDIR = "import os, sys\nos.makedirs(sys.argv[1], mode=0o700, exist_ok=True)"
# What a call to the engine raises when the engine itself is gone or dropped the connection (dockerd stopped,
# socket removed): the SDK's own errors and the HTTP transport's underneath it, which it does not wrap.
# The SDK reads an exec's stream from the raw socket, so a reset connection can surface as a bare ConnectionError.
ENGINE_ERRORS: tuple[type[Exception], ...] = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    ConnectionError,
)


def engine_lost(where: str, err: BaseException) -> TransportError:
    """One line for a dropped engine connection, naming what was going on and what happens to the container."""
    return TransportError(
        f"{where}: Docker engine connection lost ({type(err).__name__})",
        hint="is dockerd running? a container it could not remove is removed later or by `benchbed cleanup`",
    )


def client_for(url: str | None, where: str) -> docker.DockerClient:
    """Connect and ping; an unreachable engine is one clear line naming what was tried."""
    tried = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    client: docker.DockerClient | None = None
    try:
        client = docker.DockerClient(base_url=url) if url else docker.from_env()
        client.ping()
    except ENGINE_ERRORS as err:
        if client is not None:
            client.close()
        raise ProvisionError(
            f"{where}: Docker engine not reachable at {tried}", hint="is dockerd running? set docker_host to its URL"
        ) from err
    return client


class DockerSession(SessionImpl):
    def __init__(self, target: DockerProvisioner, container: Any) -> None:
        self.target = target
        self.container = container
        self.workdir = target.spec.workdir
        self.api = target.client.api
        self.ready = False  # the workdir exists only after the first exec made it

    @property
    def publish(self) -> int | None:
        """`publish:` (docker and podman alike)."""
        return self.target.spec.publish

    def serve_net(self) -> dict[str, Any]:
        spec = self.target.spec
        if spec.network == "host":  # the host's own stack: loopback is the controller's loopback
            return {"bind": "127.0.0.1", "port": 0}
        if self.publish is not None:  # reached through the engine's port mapping: listen on the bridge too
            return {"bind": "0.0.0.0", "port": self.publish}  # in the container's namespace
        return {"bind": "127.0.0.1", "port": None}

    def endpoint(self, port: int) -> AbstractContextManager[Endpoint | None]:
        return contextlib.nullcontext(self._endpoint(port))

    def _endpoint(self, port: int) -> Endpoint | None:
        spec = self.target.spec
        if spec.network == "host":
            return Endpoint("127.0.0.1", port, "host-network")
        if self.publish is None or port != self.publish:
            return None
        self.container.reload()
        bound = (self.container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        for b in bound:
            if b.get("HostIp") == "127.0.0.1" and b.get("HostPort"):
                return Endpoint("127.0.0.1", int(b["HostPort"]), "published-port")
        return None

    def put(self, local: Path, remote: str) -> None:
        """Over the exec stream, not the archive API: only a process inside sees the files in every runtime."""
        spec = self.target.spec
        try:
            send_file(
                self.api,
                self.container.id,
                local,
                remote,
                python=spec.python,
                user=spec.user or "",
                timeout=spec.start_timeout_s,
            )
        except ShipError as err:
            raise self.target.error(TransportError, f"cannot copy the agent into the container: {err}") from err
        except ENGINE_ERRORS as err:
            raise engine_lost(f"target {self.target.name!r}", err) from err

    def stream(self, argv: Sequence[str], on_line: LineHandler, *, timeout: float | None = None) -> CommandResult:
        t0 = time.perf_counter()
        err_tail = Tail()
        spec = self.target.spec
        try:
            exec_id = self.api.exec_create(
                self.container.id,
                list(argv),
                stdout=True,
                stderr=True,
                user=spec.user or "",
                environment=spec.env or None,
                workdir=self.workdir if self.ready else None,
            )["Id"]
            chunks = self.api.exec_start(exec_id, stream=True, demux=True)
        except docker.errors.APIError as err:
            raise self.target.error(TransportError, f"exec failed: {err.explanation or err}") from err
        except ENGINE_ERRORS as err:
            raise engine_lost(f"target {self.target.name!r}", err) from err
        timed_out = threading.Event()

        def kill() -> None:  # the container is this instance's alone: killing it ends the exec and its children
            timed_out.set()
            with suppress(*ENGINE_ERRORS):
                self.container.kill()

        def kill_quietly() -> None:  # interrupted: end the exec so the reader thread returns
            with suppress(*ENGINE_ERRORS):
                self.container.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()

        def stdout_only() -> Iterator[bytes]:
            for out, err in chunks:
                if err:
                    err_tail.add(err.decode("utf-8", "replace"))
                if out:
                    yield out

        try:
            rest = iter_lines(pumped(stdout_only(), kill_quietly), on_line)
            if rest:
                on_line(rest)
        except (requests.exceptions.RequestException, ConnectionError) as err:
            raise engine_lost(f"target {self.target.name!r}", err) from err
        except docker.errors.DockerException as err:
            raise self.target.error(TransportError, f"lost the exec stream: {err}") from err
        finally:
            if timer:
                timer.cancel()
            with suppress(Exception):  # the SDK leaves the exec's socket open once its stream is exhausted
                chunks.close()
        rc, reason = self._exit(exec_id)
        return CommandResult(tuple(argv), rc, "", str(err_tail), time.perf_counter() - t0, timed_out.is_set(), reason)

    def _exit(self, exec_id: str) -> tuple[int, str | None]:
        """Exit code of the exec, and why it died when the container knows better (OOM, container killed)."""
        try:
            info = self.api.exec_inspect(exec_id)
            rc = -1 if info.get("ExitCode") is None else int(info["ExitCode"])
            state = self._settled_state(rc)
        except requests.exceptions.RequestException as err:
            return -1, f"Docker engine connection lost mid-case ({err.__class__.__name__})"
        except docker.errors.DockerException as err:
            return -1, f"container vanished mid-case ({err.__class__.__name__})"
        if state.get("OOMKilled") or (rc == 137 and self._oom_kills() > 0):
            limit = self.target.spec.memory or "the host's memory"
            return rc, f"OOM-killed in the container (memory limit {limit})"
        if not state.get("Running", False):
            return rc, f"container stopped mid-case ({state.get('Status')}, exit {state.get('ExitCode')})"
        return rc, None

    def _settled_state(self, rc: int) -> dict[str, Any]:
        """After a SIGKILL (rc 137) the exec's stream ends before dockerd records the container's death: give
        the state up to 2 s to catch up, so a killed container is not reported as a bare exit code."""
        deadline = time.monotonic() + (2.0 if rc in (137, -1) else 0.0)
        while True:
            self.container.reload()
            state: dict[str, Any] = self.container.attrs.get("State", {})
            if not state.get("Running", False) or state.get("OOMKilled") or time.monotonic() >= deadline:
                return state
            time.sleep(0.05)

    def _oom_kills(self) -> int:
        """OOM kills of any process in the container, not only its init (cgroup v2 memory.events, v1 oom_control)."""
        files = ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"]
        try:
            res = self.container.exec_run(["cat", *files])
        except ENGINE_ERRORS:
            return 0
        for line in res.output.decode(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0


class DockerProvisioner(TargetImpl):
    engine = "docker"  # the fingerprint's key for the engine's facts
    runtime_config = "runtimes in /etc/docker/daemon.json, then SIGHUP dockerd"  # where runtimes are registered
    load_hint = "build or load the image first (scripts/build-test-image), or set pull: missing"

    def __init__(self, name: str, spec: DockerSpec, run_id: str) -> None:
        super().__init__(name, spec, run_id)
        self.spec: DockerSpec = spec
        self._client: docker.DockerClient | None = None
        self._described: dict[str, Any] = {}
        self._runtime_checked = False
        self._left: list[str] = []  # containers the engine was not there to remove: tried again at close()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = client_for(self.spec.docker_host, f"target {self.name!r}")
        return self._client

    @property
    def local_engine(self) -> bool:
        """Whether the engine runs on this host (then the runtime binary's own version is read here)."""
        url = self.spec.docker_host or os.environ.get("DOCKER_HOST") or "unix://"
        return url.startswith("unix://")

    def create_args(self) -> dict[str, Any]:
        args = create_args(self.spec, self.name, self.run_id)
        if self.spec.gpus is not None:
            args["device_requests"] = gpu_requests(self.spec)
        return args

    def close(self) -> None:
        """Release the engine connection at the end of a run (the runner calls this); remove the containers the
        engine was not there to remove, if it is back, else name them for `benchbed cleanup`."""
        left, self._left = self._left, []
        for cid in left:
            try:
                self.client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError, ProvisionError):
                log.warning("target %r: container %s left for `benchbed cleanup` (engine unreachable)", self.name, cid)
        if self._client is not None:
            self._client.close()
            self._client = None

    def describe(self) -> dict[str, Any]:
        """Controller-side facts for the fingerprint: image, engine, runtime and the limits applied."""
        return dict(self._described)

    def _image(self) -> Any:
        spec, name = self.spec, self.spec.image
        if spec.pull == "always":
            return self._pull(name)
        try:
            return self.client.images.get(name)
        except docker.errors.ImageNotFound as err:
            if spec.pull == "never":
                raise self.error(
                    ProvisionError,
                    f"image {name!r} is not present and pull is 'never'",
                    hint=self.load_hint,
                ) from err
            return self._pull(name)

    def _pull(self, name: str) -> Any:
        repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
        try:
            return self.client.images.pull(repo, tag=tag or "latest")
        except docker.errors.APIError as err:
            raise self.error(ProvisionError, f"cannot pull image {name!r}: {err.explanation or err}") from err

    @contextmanager
    def provision(self) -> Iterator[DockerSession]:
        """One container, removed on the way out; a dropped engine connection anywhere is one TransportError."""
        try:
            with self._provision() as session:
                yield session
        except ENGINE_ERRORS as err:
            raise engine_lost(f"target {self.name!r}", err) from err

    @contextmanager
    def _provision(self) -> Iterator[DockerSession]:
        self._clock = PhaseClock()
        clock = self._clock
        if not self._runtime_checked:  # an unknown runtime: one line naming the registered ones, nothing created
            check_known(self, self.spec.oci_runtime, engine_runtimes(self.client)[0], self.runtime_config)
            self._runtime_checked = True
        t = time.perf_counter()
        image = self._image()
        clock.add("image", time.perf_counter() - t)
        t = time.perf_counter()
        container = None
        try:
            with held_signals():  # Ctrl-C mid-request would leave a created container unnamed here (until a sweep)
                try:
                    container = self.client.containers.create(image.id, **self.create_args())
                except docker.errors.APIError as err:
                    raise start_error(self, self.spec, err) from err
            clock.add("create", time.perf_counter() - t)
            t = time.perf_counter()
            try:
                container.start()
            except docker.errors.APIError as err:
                raise start_error(self, self.spec, err) from err
            clock.add("start", time.perf_counter() - t)
            session = DockerSession(self, container)
            t = time.perf_counter()
            ready = session.run([self.spec.python, "-c", MKDIR, self.spec.workdir], timeout=self.spec.start_timeout_s)
            if ready.rc != 0:
                raise not_ready(self, self.spec, ready)
            session.ready = True
            clock.add("exec_ready", time.perf_counter() - t)
            if not self._described:
                t = time.perf_counter()
                self._remember(image, container)
                clock.add("inspect", time.perf_counter() - t)
            yield session
        finally:
            if container is not None:
                with held_signals():  # a second Ctrl-C waits for this
                    self._remove(container.id)

    def _remove(self, cid: str) -> None:
        try:
            self.client.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except ENGINE_ERRORS as err:  # the engine is gone: try again at the end of the run
            log.debug("container %s not removed now: %s", cid, err)
            self._left.append(cid)

    def _remember(self, image: Any, container: Any) -> None:
        host = container.attrs.get("HostConfig", {})
        try:
            version = self.client.version()
        except ENGINE_ERRORS:
            version = {}
        self._described = {
            self.engine: {
                "image": self.spec.image,
                "image_id": image.id,
                "image_digests": image.attrs.get("RepoDigests") or [],
                "runtime": runtime_facts(self.client, self.spec.oci_runtime, local_engine=self.local_engine),
                "engine_version": version.get("Version"),
                "engine_api": version.get("ApiVersion"),
                "engine_os": f"{version.get('Os')}/{version.get('Arch')}",
                "limits": {
                    "nano_cpus": host.get("NanoCpus") or None,
                    "memory_bytes": host.get("Memory") or None,
                    "shm_size_bytes": host.get("ShmSize"),
                    "network_mode": host.get("NetworkMode"),
                    "privileged": host.get("Privileged"),
                    "device_requests": host.get("DeviceRequests"),
                },
            }
        }
