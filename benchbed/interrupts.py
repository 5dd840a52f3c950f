"""Sections that Ctrl-C and SIGTERM must not cut in half.

Python raises KeyboardInterrupt at whatever bytecode the main thread is running when the signal arrives: inside
`tempfile.mkdtemp` after the directory exists but before its name is returned, inside `subprocess.Popen` after
the fork but before the caller holds the child, halfway through removing a tree. Each of those leaks what was
just created. `held_signals()` makes such a section atomic: a SIGINT or SIGTERM that arrives meanwhile is
recorded and delivered (to the handler that was installed before) as soon as the section ends, so the
interrupt still happens, only after the resource is recorded or released.

Why swap handlers rather than block the signals with `pthread_sigmask`: a blocked mask only covers the calling
thread (a process-directed signal then goes to another thread, and Python still runs the handler in the main
thread), and it is inherited by every process spawned inside the section, which would start the agent with
Ctrl-C and SIGTERM blocked. A handler is reset to the default by exec.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HELD = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers


@contextmanager
def held_signals() -> Iterator[None]:
    """Defer SIGINT and SIGTERM until the block ends. Nests. Outside the main thread a no-op: Python runs signal
    handlers in the main thread only, so no other thread can be interrupted by one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved: dict[int, Handler] = {}
    holding = True

    def hold(signum: int, frame: FrameType | None) -> None:
        if holding:
            pending.append(signum)
        else:  # arrived while the handlers are being put back: act as the one this replaced
            _act(saved[signum], signum, frame)

    try:
        for signum in HELD:
            before = signal.getsignal(signum)
            if before is None:  # installed outside Python: cannot be put back, so leave it alone
                continue
            saved[signum] = before
            signal.signal(signum, hold)
        yield
    finally:
        holding = False
        for number, handler in saved.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(pending):
            _act(saved[number], number, None)


def _act(handler: Handler, signum: int, frame: FrameType | None) -> None:
    """What `signum` arriving now would do: run its handler here, or the default action."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)
