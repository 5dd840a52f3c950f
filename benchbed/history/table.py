"""The trend as table rows, shared by the terminal and the HTML page (no plotly here: the terminal path stays light)."""

from __future__ import annotations

from benchbed.history.query import Series, Trend

HEADERS = ["series", "run", "started (UTC)", "median", "instances", "accepted", "environment change", "level shift"]


def label(s: Series) -> str:
    return s.target if s.params in ("{}", "") else f"{s.target} {s.params}"


def table_rows(trend: Trend) -> list[list[str]]:
    """One row per run and series: run, time, value, n, what changed, level shift (shared with the terminal)."""
    rows = []
    for s in trend.series:
        env = {e.index: e.text() for e in s.env_changes}
        shifts = {sh.index: sh for sh in s.shifts}
        for i, r in enumerate(s.points.to_dict("records")):
            sh = shifts.get(i)
            mark = ""
            if sh is not None:
                near = s.coincides(sh)
                mark = f"level {sh.change_pct:+.1f}%" + (f" (with {near.text()})" if near else " (no env change)")
            when = r["started"].strftime("%Y-%m-%d %H:%M")
            ok = "✓" if r["accepted"] else ""
            rows.append([label(s), str(r["run_id"]), when, f"{r['value']:.6g}", str(r["n"]), ok, env.get(i, ""), mark])
    return rows
