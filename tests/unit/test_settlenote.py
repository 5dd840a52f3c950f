"""The report's quiet-start line, from the settle records in the case table."""

from __future__ import annotations

import pandas as pd

from benchbed.report.settlenote import summary


def cases(rows: list[tuple[str, object]]) -> pd.DataFrame:
    return pd.DataFrame([{"target": t, "settle": s} for t, s in rows])


def test_quiet_and_busy_starts_are_counted_per_target() -> None:
    quiet = {"settled": True, "waited_s": 0.25, "busy_cpus": 0.02}
    busy = {"settled": False, "waited_s": 5.0, "busy_cpus": 0.4}
    line = summary(cases([("local", quiet), ("local", quiet), ("box", quiet), ("box", busy)]), ["local", "box"])
    assert line == (
        "settle gate: local 2/2 quiet (waited median 0.25 s); "
        "box 1/2 quiet (waited median 2.62 s), 1 started busy (up to 0.40 CPU)"
    )


def test_no_gate_no_line() -> None:
    assert summary(cases([("local", None)]), ["local"]) is None
    assert summary(pd.DataFrame({"target": ["local"]}), ["local"]) is None
    assert summary(pd.DataFrame(), ["local"]) is None
