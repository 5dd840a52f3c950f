"""The agent's side of the protocol stream: lines that would disturb the measurement wait until it pauses.

Every line the agent writes wakes the processes that carry it to the controller — the harness alone for a local
agent, containerd-shim, dockerd and the Docker SDK reader for a container, sshd or the VM's network for a remote
one — and their work lands on the machine while the workload's next repetition is timed. A line per repetition
therefore charges each repetition with the transport's wake-up chain, which differs per boundary: that is a cost
of our reporting, not of the boundary. Measured on the 2-vCPU CI machine (docs/methodology.md): about 130 µs of
dockerd + containerd CPU per line (the harness: ~11 µs), and in a container a STREAM copy repetition that follows
a line was preempted 1.5-1.8× as often as one that does not (no difference chrooted).

So, when the suite asks for it (`hold_s`; the default 0 holds nothing, so an agent killed outright loses no
sample), samples and the fingerprint are held while the workload runs and written together when it ends, or by a
flusher thread once the oldest held line is `hold_s` old: a long workload still shows progress, and a workload
killed outright loses at most `hold_s` of samples. Any other line (skipped, error, stack, serve, done) writes the
held ones first, in order, so the controller sees the same stream, only later.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

from benchbed.protocol import Line, encode

HELD = frozenset({Line.SAMPLE, Line.FINGERPRINT})


class Emitter:
    """Writes protocol lines to `out`; HELD kinds wait (see the module docstring), the rest go at once."""

    def __init__(self, out: TextIO, hold_s: float = 0.0) -> None:
        self.out = out
        self.hold_s = hold_s
        self._held: list[str] = []
        self._since = 0.0  # monotonic time the oldest held line arrived
        self._cond = threading.Condition()
        self._flusher: threading.Thread | None = None

    def __call__(self, kind: Line, **fields: Any) -> None:
        line = encode(kind, **fields) + "\n"
        with self._cond:
            if kind in HELD and self.hold_s > 0:
                if not self._held:
                    self._since = time.monotonic()
                    self._start_flusher()
                    self._cond.notify()
                self._held.append(line)
                return
            self._held.append(line)  # one write, one wake-up at the other end
            self._write_held()

    def flush(self) -> None:
        """Write whatever is held (the agent's last act, whatever way it ends)."""
        with self._cond:
            self._write_held()

    def _write_held(self) -> None:  # caller holds the lock
        if self._held:
            self.out.write("".join(self._held))
            self.out.flush()
            self._held.clear()

    def _start_flusher(self) -> None:  # caller holds the lock
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_when_due, name="benchbed-emit", daemon=True)
            self._flusher.start()

    def _flush_when_due(self) -> None:
        """Sleeps until something is held, then until it is hold_s old: no wake-ups while nothing waits."""
        with self._cond:
            while True:
                if not self._held:
                    self._cond.wait()
                    continue
                due = self._since + self.hold_s - time.monotonic()
                if due > 0:
                    self._cond.wait(due)
                    continue
                try:
                    self._write_held()
                except (OSError, ValueError):  # the controller is gone (or out closed): nobody left to tell
                    self._held.clear()
                    return
