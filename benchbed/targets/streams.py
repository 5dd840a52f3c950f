"""Byte streams from a target ▸ lines, bounded tails and Ctrl-C-friendly reads; shared by every session."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

from benchbed.targets.base import LineHandler

TICK_S = 0.25  # longest the main thread blocks in C, so Ctrl-C is handled within this even for a silent agent


def pumped(chunks: Iterator[bytes], abort: Callable[[], None]) -> Iterator[bytes]:
    """Read `chunks` in a helper thread and hand them over here, waking every TICK_S.

    A process-directed SIGINT may land on any thread; Python then runs the handler in the main thread only
    when that thread next executes bytecode. A main thread parked in a C read without timeout (the Docker SDK
    polls forever) would not notice Ctrl-C until the agent wrote again. `abort` unblocks the reader on exit.
    """
    box: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=256)

    def pump() -> None:
        try:
            for chunk in chunks:
                box.put(chunk)
        except BaseException as err:  # handed to the consumer, which re-raises it in its own thread
            box.put(err)
        finally:
            box.put(None)

    reader = threading.Thread(target=pump, name="benchbed-pump", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = box.get(timeout=TICK_S)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if reader.is_alive():
            abort()
            while reader.is_alive():  # drain so a blocked put() lets the pump see the end of its stream
                with contextlib.suppress(queue.Empty):
                    box.get(timeout=TICK_S)
                reader.join(0)


def iter_lines(chunks: Iterator[bytes], on_line: LineHandler) -> str:
    """Split a byte stream into lines for on_line; returns a trailing partial line, if any."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            on_line(line.decode("utf-8", errors="replace"))
    return pending.decode("utf-8", errors="replace")
