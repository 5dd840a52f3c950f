"""held_signals: an interrupt during the section is delivered after it, to the handler that was there before."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from benchbed.interrupts import held_signals


class Terminated(Exception):
    pass


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@pytest.fixture
def handlers() -> Iterator[None]:
    """Ctrl-C raising KeyboardInterrupt (even where the test runs as a background job, with SIGINT ignored) and
    SIGTERM raising like the CLI's handler does."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


@pytest.mark.parametrize(("sig", "exc"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
@pytest.mark.usefixtures("handlers")
def test_signal_in_section_is_raised_after_it(sig: signal.Signals, exc: type[BaseException]) -> None:
    steps: list[str] = []

    def section() -> None:
        with held_signals():
            signal.raise_signal(sig)
            steps.append("after the signal")

    with pytest.raises(exc):
        section()
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is _terminate


@pytest.mark.usefixtures("handlers")
def test_nested_sections_deliver_once_at_the_outer_end() -> None:
    steps: list[str] = []

    def sections() -> None:
        with held_signals():
            with held_signals():
                signal.raise_signal(signal.SIGINT)
                steps.append("inner")
            steps.append("outer")

    with pytest.raises(KeyboardInterrupt):
        sections()
    assert steps == ["inner", "outer"]


def test_quiet_section_restores_handlers_and_raises_nothing() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with held_signals():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_outside_the_main_thread_it_is_a_no_op() -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with held_signals():
                pass
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors == []


def test_default_action_follows_the_section() -> None:
    """SIGTERM without a Python handler still terminates the process, once the section is done."""
    code = (
        "import signal, sys\n"
        "from benchbed.interrupts import held_signals\n"
        "with held_signals():\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "    print('section done', flush=True)\n"
        "print('not reached', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGTERM
    assert proc.stdout == "section done\n"
