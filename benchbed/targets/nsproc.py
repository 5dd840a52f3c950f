"""The `ns` kind's holder: the process whose namespaces every command of an instance joins, and its lifetime.

Kept apart from `ns.py` (spec, command lines, target, sweep) because it is plain process plumbing: start, wait for
a line with a deadline while Ctrl-C stays live, find the child inside, kill pid 1 first so the tool reaps it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

from benchbed.interrupts import held_signals
from benchbed.targets.streams import TICK_S

READY_TIMEOUT_S = 30.0


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
        with held_signals():  # never a started holder that stop() does not know about
            self._spawn()

    def _spawn(self) -> None:
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
