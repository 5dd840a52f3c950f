"""Which samples are statistics: only those of instances that finished `ok`. An instance that failed or was cut
short may have written samples before it died; they stay on disk and are counted per case, apart (every report and
`compare` shows them), so a reader sees what was left out and why without it moving a median."""

from __future__ import annotations

from typing import Any

import pandas as pd

UNFINISHED_COLUMNS = ["target", "workload", "params", "instance", "case", "attempt", "samples"]


def attempt_key(row: dict[str, Any]) -> tuple[Any, int]:
    """Which try of which planned instance a sample or case record belongs to (a resumed run retries some)."""
    return row.get("case"), int(row.get("attempt") or 0)


def finished_samples(
    rows: list[dict[str, Any]], case_rows: list[dict[str, Any]], meta: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The samples of instances that finished `ok`, and the others, left out. An instance that failed
    or was cut short may have written samples before it died; they stay on disk, out of the statistics. Cut short
    means: planned (run.json's plan) but without a case record. A directory without a plan (hand-made, imported)
    loses only the samples of instances recorded as not ok."""
    outcome = {attempt_key(c): c.get("status") for c in case_rows}
    planned = bool(meta.get("plan"))

    def counts(row: dict[str, Any]) -> bool:
        if "case" not in row:
            return True
        status = outcome.get(attempt_key(row))
        return status == "ok" if status is not None or planned else True

    kept: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    for r in rows:
        (kept if counts(r) else left).append(r)
    return kept, left


def unfinished_instances(left: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per instance (try) whose samples `finished_samples` left out, with how many samples it wrote."""
    per: dict[tuple[Any, int], dict[str, Any]] = {}
    for r in left:
        key = attempt_key(r)
        rec = per.get(key)
        if rec is None:
            keep = ("target", "workload", "params", "instance")
            rec = per[key] = {**{k: r.get(k) for k in keep}, "case": key[0], "attempt": key[1], "samples": 0}
        rec["samples"] += 1
    return pd.DataFrame(list(per.values()), columns=UNFINISHED_COLUMNS)
