"""Fault injectors for tests/integration/test_faults.py: real faults, confined to what the test owns.

`EngineLink` is a Unix-socket relay in front of the real dockerd. Cutting it is, for the harness, exactly the engine
going away mid-case (open connections aborted, then the socket file gone: `FileNotFoundError` on reconnect), while
the shared dockerd other tests use keeps running. `restore()` brings the engine back at the same address.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

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
