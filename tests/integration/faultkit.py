"""Fault injectors and CLI helpers for tests/integration/test_faults.py and test_resume.py: real faults, confined to
what the test owns.

`EngineLink` is a Unix-socket relay in front of a real daemon's socket (dockerd, libvirtd). Cutting it is, for the
harness, exactly the daemon going away mid-case (open connections aborted, then the socket file gone:
`FileNotFoundError` on reconnect), while the shared daemon other tests use keeps running. `restore()` brings the
engine back at the same address.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import interruptible

ENGINE = "/var/run/docker.sock"


class EngineLink:
    def __init__(self, engine: str = ENGINE) -> None:
        self.engine = engine
        self.dir = Path(tempfile.mkdtemp(prefix="bbf-"))  # short: a socket path is at most 107 bytes
        self.path = self.dir / "engine.sock"
        self.url = f"unix://{self.path}"
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(64)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        """The engine is gone: no new connection (the socket file is removed), open ones aborted."""
        server, self.server = self.server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):
            self.dir.rmdir()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.engine)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def tmpfs(size_kib: int) -> Path:
    """A fresh tmpfs of `size_kib` (root only): a results store that fills up for real."""
    where = Path(tempfile.mkdtemp(prefix="bbf-store-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "bbf", str(where)], check=True)
    return where


def unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False)
    with contextlib.suppress(OSError):
        where.rmdir()


# ── running benchbed as a user does ─────────────────────────────────────────────────────────────────────────
SLOW = '''
import time
from dataclasses import dataclass
from benchbed.workloads import Sample, workload

@dataclass(frozen=True)
class P:
    seconds: float = 5.0
    samples: int = 1

@workload("test.slow", params=P)
def slow(p, ctx):
    """`samples` samples, then a sleep: a case a fault can hit in the middle."""
    for i in range(p.samples):
        yield Sample("x", float(i), "s", "lower", "measure", i)
    time.sleep(p.seconds)
'''


def write(tmp: Path, targets: dict[str, Any], suite: str) -> tuple[Path, Path]:
    (tmp / "slow.py").write_text(SLOW)
    (tmp / "t.yaml").write_text(json.dumps({"targets": targets}))
    (tmp / "s.yaml").write_text(suite)
    return tmp / "t.yaml", tmp / "s.yaml"


def cli_env() -> dict[str, str]:
    """The local target runs `python3` from PATH: this interpreter's, so the agent matches the harness."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def bench(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=cli_env(),
    )


def start(cwd: Path, reap: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchbed.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=interruptible,
    )
    reap.append(proc)
    return proc


def wait_for(what: str, check: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def samples_text(res: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in res.glob("*/samples.jsonl"))
