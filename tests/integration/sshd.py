"""A private OpenSSH server on 127.0.0.1 for tests and benchmarks: own host key, own authorized_keys, own port.

Not a conftest: test modules wrap `running()` in their own fixtures, so the helper also serves benchmarks/.
Keys are made with ssh-keygen (tests may use the OpenSSH tools; benchbed itself never does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def sshd_binary() -> str | None:
    """sshd re-executes itself, so it needs an absolute path."""
    found = shutil.which("sshd")
    for cand in ([found] if found else []) + list(SSHD_CANDIDATES):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def missing_reason() -> str | None:
    """Why a real sshd cannot be started here, or None."""
    if sshd_binary() is None:
        return "sshd not installed (apt-get install -y openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen not installed (apt-get install -y openssh-client)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "benchbed-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


@dataclass
class Sshd:
    """One running sshd. `client_key` is authorized for root; `known_hosts` pins this server's host key."""

    dir: Path
    port: int
    host_key: Path
    client_key: Path
    known_hosts: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_config: list[str] = field(default_factory=list)

    @property
    def host_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def host_key_line(self) -> str:
        kind, b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{self.host_name} {kind} {b64}\n"

    def spec(self, **over: Any) -> dict[str, Any]:
        """A targets-file entry for this server (as root, with the pinned key)."""
        return {
            "kind": "ssh",
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "key": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "connect_timeout_s": 10,
            **over,
        }

    def write_config(self) -> Path:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            # root's ~/.bashrc on CI machines runs `pyenv init` (~0.3 s per command); bash skips it below SHLVL 2
            "SetEnv SHLVL=1",
            "AllowTcpForwarding yes",
            "MaxStartups 200",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            *self.extra_config,
        ]
        path = self.dir / "sshd_config"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        binary = sshd_binary()
        assert binary is not None, missing_reason()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir, required as root
        config = self.write_config()
        log = (self.dir / "sshd.log").open("ab")
        try:
            self.proc = subprocess.Popen(
                [binary, "-D", "-e", "-f", str(config), "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd on port {self.port} not ready after {timeout} s: {self.log()}")

    def log(self) -> str:
        path = self.dir / "sshd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def session_pids(self) -> list[int]:
        """Every process below the listener: per-connection sshd processes, shells, agents."""
        if self.proc is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        out, todo = [], [self.proc.pid]
        while todo:
            for kid in children.get(todo.pop(), []):
                out.append(kid)
                todo.append(kid)
        return out

    def kill(self) -> None:
        """Simulate the host's sshd dying: the listener and every connection's sshd go at once."""
        if self.proc is None:
            return
        sshds = [p for p in self.session_pids() if _comm(p) == "sshd"]
        for pid in [self.proc.pid, *sshds]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def make(base: Path, *, client_key: Path | None = None) -> Sshd:
    """Generate host key, authorized_keys and a pinned known_hosts in base (not started)."""
    base.mkdir(parents=True, exist_ok=True)
    host_key = keygen(base / "host_ed25519")
    client_key = client_key or keygen(base / "client_ed25519")
    shutil.copyfile(client_key.with_suffix(".pub"), base / "authorized_keys")
    sshd = Sshd(base, free_port(), host_key, client_key, base / "known_hosts")
    sshd.known_hosts.write_text(sshd.host_key_line())
    return sshd


@contextlib.contextmanager
def running(base: Path, *, client_key: Path | None = None, extra_config: list[str] | None = None) -> Iterator[Sshd]:
    sshd = make(base, client_key=client_key)
    sshd.extra_config = list(extra_config or [])
    for attempt in range(3):  # free_port() races with other processes taking the port
        try:
            sshd.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            sshd.stop()
            sshd.port = free_port()
            sshd.known_hosts.write_text(sshd.host_key_line())
    try:
        yield sshd
    finally:
        sshd.stop()


def write_targets(path: Path, targets: dict[str, dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"targets": targets}, sort_keys=False))
    return path


def leftovers(parent: Path, marker: str = "benchbed-") -> tuple[list[str], list[int]]:
    """Workdirs still under parent, and processes whose command line mentions parent (agents left behind)."""
    dirs = sorted(p.name for p in parent.iterdir() if p.name.startswith(marker)) if parent.exists() else []
    procs = []
    needle = str(parent).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b"agent.pyz" in cmdline:
            procs.append(int(entry.name))
    return dirs, procs


def make_runner(
    base: Path,
    targets: dict[str, dict[str, Any]],
    workloads: list[dict[str, Any]],
    *,
    defaults: dict[str, Any] | None = None,
    modules: list[Path] | None = None,
    parallel: int = 1,
    observer: Any = None,
    run_id: str = "run",
) -> Any:
    """Write suite + targets into base and plan them (seed 1): a Runner ready to execute() in-process."""
    from benchbed.config import load_suite, load_targets
    from benchbed.plan import make_plan
    from benchbed.runner import Runner

    base.mkdir(parents=True, exist_ok=True)
    suite = {
        "name": "t",
        "baseline": next(iter(targets)),
        "seed": 1,
        "defaults": {"instances": 1, "repetitions": 2, "warmup": 1, "timeout_s": 120, **(defaults or {})},
        "modules": [str(m) for m in modules or []],  # absolute: a module registers once per process
        "workloads": workloads,
    }
    (base / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    loaded = load_suite(base / "suite.yaml")
    specs = load_targets(write_targets(base / "targets.yaml", targets))
    plan = make_plan(loaded.suite, list(specs), seed=1)
    return Runner(loaded, specs, plan, base / "results", run_id, observer, parallel=parallel)


def run_suite(base: Path, targets: dict[str, dict[str, Any]], workloads: list[dict[str, Any]], **kw: Any) -> Any:
    """make_runner + execute; returns the Runner (its run directory is runner.run_dir)."""
    runner = make_runner(base, targets, workloads, **kw)
    runner.execute()
    return runner


@contextlib.contextmanager
def required(tmp: Path) -> Iterator[Sshd]:
    """A running sshd for a test module — or a skip (a failure under BENCHBED_REQUIRE=ssh) saying why not."""
    from tests.conftest import need

    why = missing_reason()
    if why:
        need("ssh", why)
    try:
        import paramiko  # noqa: F401
    except ImportError:
        need("ssh", "paramiko not installed (pip install 'benchbed[ssh]')")
    with running(tmp) as srv:
        yield srv
