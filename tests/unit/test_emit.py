"""The agent holds samples and the fingerprint while the workload runs (benchbed.agent.emit)."""

from __future__ import annotations

import io
import json
import threading
import time

from benchbed.agent.emit import Emitter
from benchbed.protocol import Line


class Out(io.StringIO):
    """Records what reached the controller, flush by flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []
        self.lock = threading.Lock()

    def flush(self) -> None:
        with self.lock:
            self.flushed.append(self.getvalue())

    def kinds(self) -> list[str]:
        with self.lock:
            text = self.flushed[-1] if self.flushed else ""
        return [json.loads(line)["t"] for line in text.splitlines()]


def test_samples_and_fingerprint_wait_and_other_lines_bring_them_out_in_order() -> None:
    out = Out()
    emit = Emitter(out, hold_s=60)
    emit(Line.HELLO, pid=1)
    emit(Line.FINGERPRINT, data={})
    emit(Line.SAMPLE, metric="x", value=1.0)
    emit(Line.SAMPLE, metric="x", value=2.0)
    assert out.kinds() == ["hello"]  # nothing the controller would react to while the workload runs
    emit(Line.STACK, data={})
    assert out.kinds() == ["hello", "fingerprint", "sample", "sample", "stack"]
    assert len(out.flushed) == 2  # the held lines went in one write, with the line that released them


def test_flush_writes_what_is_held() -> None:
    out = Out()
    emit = Emitter(out, hold_s=60)
    emit(Line.SAMPLE, metric="x", value=1.0)
    emit.flush()
    assert out.kinds() == ["sample"]
    emit.flush()
    assert len(out.flushed) == 1  # nothing held: no write, no wake-up


def test_a_held_line_goes_out_after_hold_s_without_another_emit() -> None:
    out = Out()
    emit = Emitter(out, hold_s=0.2)
    emit(Line.SAMPLE, metric="x", value=1.0)
    deadline = time.monotonic() + 10
    while not out.kinds() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert out.kinds() == ["sample"]  # a workload that hangs or is killed later has reported it
    emit(Line.SAMPLE, metric="x", value=2.0)  # the flusher sleeps again until the next one is due
    while len(out.kinds()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert out.kinds() == ["sample", "sample"]


def test_hold_zero_streams_every_line() -> None:
    out = Out()
    emit = Emitter(out, hold_s=0)
    emit(Line.SAMPLE, metric="x", value=1.0)
    assert out.kinds() == ["sample"]
