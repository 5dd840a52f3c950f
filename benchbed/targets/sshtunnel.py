"""A local port forward over an open SSH connection (`ssh -L` in paramiko): how the controller reaches a server in
an `ssh` or `libvirt` target for serve.latency's across path. It listens on 127.0.0.1 only, for as long as the
`with` block lasts; every accepted connection becomes one direct-tcpip channel to 127.0.0.1:<port> on the far side.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

from benchbed.targets.base import Endpoint


def _pump(a: Any, b: Any) -> None:
    """Copy bytes both ways between a socket and a channel until either side closes."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 1.0)
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def tunnel(transport: Any, port: int) -> Iterator[Endpoint]:
    """Forward 127.0.0.1:<ephemeral> here to 127.0.0.1:`port` on the SSH server's side."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                chan = transport.open_channel("direct-tcpip", ("127.0.0.1", port), peer)
            except Exception:  # the far side refused: the client sees its connection close
                conn.close()
                continue
            threading.Thread(target=_pump, args=(conn, chan), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield Endpoint("127.0.0.1", listener.getsockname()[1], "ssh-tunnel")
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
