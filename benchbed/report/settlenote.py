"""One line on the settle gate (agent/settle.py) for the report header: did instances start on a quiet machine?

A ratio whose instances started while something else ran measures that something too; the line says, per target,
how many instances found the machine quiet and, for the others, how busy it still was when the wait ran out.
"""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd


def summary(cases: pd.DataFrame, targets: list[str]) -> str | None:
    """ "settle gate: local 12/12 quiet (waited median 0.25 s); docker 11/12 quiet, 1 started busy (0.4 CPU)";
    None when no instance ran the gate."""
    if cases.empty or "settle" not in cases.columns:
        return None
    parts = []
    for target in targets:
        records: list[dict[str, Any]] = [
            s for s in cases.loc[cases["target"] == target, "settle"] if isinstance(s, dict)
        ]
        if not records:
            continue
        quiet = [r for r in records if r.get("settled") is True]
        busy = [r for r in records if r.get("settled") is False]
        text = f"{target} {len(quiet)}/{len(records)} quiet"
        waits = [float(r.get("waited_s") or 0.0) for r in records]
        text += f" (waited median {statistics.median(waits):.2f} s)"
        if busy:
            worst = max(float(r.get("busy_cpus") or 0.0) for r in busy)
            text += f", {len(busy)} started busy (up to {worst:.2f} CPU)"
        parts.append(text)
    return "settle gate: " + "; ".join(parts) if parts else None
