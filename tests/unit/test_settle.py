"""The settle gate: the agent waits for a quiet machine before its workload (benchbed.agent.settle)."""

from __future__ import annotations

import os
from pathlib import Path

from benchbed.agent.settle import WINDOW_S, cpu_times, settle


class Machine:
    """/proc/stat as (busy, total) ticks, advancing by one window per sleep with the given busy CPUs."""

    def __init__(self, busy_per_window: list[float]) -> None:
        self.busy_per_window = busy_per_window
        self.busy = 0
        self.total = 0
        self.t = 0.0
        self.windows = 0

    def read(self) -> tuple[int, int]:
        return self.busy, self.total

    def sleep(self, s: float) -> None:
        ncpu = os.cpu_count() or 1
        ticks = round(s * 100 * ncpu)
        cpus = self.busy_per_window[min(self.windows, len(self.busy_per_window) - 1)]
        self.busy += round(cpus * s * 100)
        self.total += ticks
        self.t += s
        self.windows += 1

    def now(self) -> float:
        return self.t


def run(m: Machine, max_s: float) -> dict[str, object]:
    return settle(max_s, read=m.read, own=lambda: 0, sleep=m.sleep, now=m.now)


def test_a_quiet_machine_settles_after_one_window() -> None:
    m = Machine([0.0])
    got = run(m, 5)
    assert got == {"settled": True, "waited_s": WINDOW_S, "busy_cpus": 0.0}


def test_it_waits_while_a_neighbour_is_busy_and_starts_once_quiet() -> None:
    m = Machine([1.0, 1.0, 0.5, 0.0])
    got = run(m, 5)
    assert got["settled"] is True
    assert m.windows == 4
    assert got["waited_s"] == 4 * WINDOW_S


def test_it_gives_up_after_max_s_and_says_so() -> None:
    m = Machine([1.0])
    got = run(m, 1.0)
    assert got["settled"] is False
    assert got["waited_s"] == 1.0
    assert got["busy_cpus"] == 1.0


def test_its_own_cpu_time_is_not_a_neighbour() -> None:
    m = Machine([1.0])
    own = iter(range(0, 10000, 25))  # the agent itself used 25 ticks a window: all the busy time seen
    got = settle(5, read=m.read, own=lambda: next(own), sleep=m.sleep, now=m.now)
    assert got["settled"] is True


def test_no_proc_stat_is_said_not_guessed(tmp_path: Path) -> None:
    assert cpu_times(str(tmp_path / "missing")) is None
    got = settle(5, read=lambda: None, own=lambda: 0, sleep=lambda s: None, now=lambda: 0.0)
    assert got["settled"] is None
    assert "no /proc/stat" in str(got["reason"])


def test_proc_stat_is_read_as_busy_and_total_ticks(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 20 1000 30 1 2 3 0 0\ncpu0 50 2 10 500 15 0 1 1 0 0\n")
    assert cpu_times(str(stat)) == (100 + 5 + 20 + 1 + 2 + 3, 1161)
    assert cpu_times() is not None  # this host has one
