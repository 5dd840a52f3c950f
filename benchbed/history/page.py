"""`benchbed history --html`: one self-contained page (plotly.js inlined, nothing fetched) in the report's style.

Per series a line of per-run medians; environment changes are dashed vertical lines labelled with what changed,
level shifts solid red ones with the change in percent. Every text placed in the figure is escaped (`charts.esc`);
the page's own text goes through html.escape and the figure JSON cannot close its <script>.
"""

from __future__ import annotations

import html
import json
from typing import Any

from benchbed.history.query import Series, Trend
from benchbed.report.charts import CONFIG, FONT, PALETTE, _layout, esc

SHIFT_COLOR = "#b2455e"
ENV_COLOR = "#6b7785"


def figure(trend: Trend) -> dict[str, Any]:
    traces: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for k, s in enumerate(trend.series):
        color = PALETTE[k % len(PALETTE)]
        x = [ts.isoformat() for ts in s.points["started"]]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": esc(_label(s)),
                "x": x,
                "y": [float(v) for v in s.points["value"]],
                "text": [esc(r) for r in s.points["run_id"]],
                "hovertemplate": "%{text}<br>%{y:.4g} " + esc(trend.unit) + "<extra>" + esc(_label(s)) + "</extra>",
                "line": {"color": color, "width": 1.5},
                "marker": {"color": color, "size": 6},
            }
        )
        for e in s.env_changes:
            shapes.append(_vline(x[e.index], ENV_COLOR, "dash"))
            notes.append(_note(x[e.index], esc(e.text()), ENV_COLOR, 1.0))
        for shift in s.shifts:
            shapes.append(_vline(x[shift.index], SHIFT_COLOR, "solid"))
            notes.append(_note(x[shift.index], esc(f"level {shift.change_pct:+.1f}%"), SHIFT_COLOR, 0.92))
    arrow = {"higher": " · ↑ higher is better", "lower": " · ↓ lower is better"}.get(trend.better, "")
    layout = _layout(420, shapes=shapes, annotations=notes)
    layout["yaxis"]["title"] = {"text": esc(f"{trend.metric} [{trend.unit}]{arrow}")}
    layout["margin"] = {"l": 60, "r": 20, "t": 60, "b": 40}
    return {"data": traces, "layout": layout}


def _label(s: Series) -> str:
    return s.target if s.params in ("{}", "") else f"{s.target} {s.params}"


def _vline(x: str, color: str, dash: str) -> dict[str, Any]:
    return {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
            "line": {"color": color, "width": 1.2, "dash": dash}}  # fmt: skip


def _note(x: str, text: str, color: str, y: float) -> dict[str, Any]:
    return {"x": x, "xref": "x", "y": y, "yref": "paper", "yanchor": "bottom", "text": text, "showarrow": False,
            "font": {"size": 10, "color": color}}  # fmt: skip


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
            rows.append([_label(s), str(r["run_id"]), when, f"{r['value']:.6g}", str(r["n"]), ok, env.get(i, ""), mark])
    return rows


HEADERS = ["series", "run", "started (UTC)", "median", "instances", "accepted", "environment change", "level shift"]


def render(trend: Trend) -> str:
    import plotly.offline  # type: ignore[import-untyped]

    fig = json.dumps(figure(trend)).replace("</", "<\\/")
    config = json.dumps(CONFIG)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(trend))
    title = html.escape(f"benchbed history: {trend.workload} {trend.metric}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: {html.escape(str(FONT["family"]))}; color: {FONT["color"]}; margin: 24px; font-size: 14px; }}
table {{ border-collapse: collapse; margin-top: 16px; }}
th, td {{ border-bottom: 1px solid #e5e8ec; padding: 4px 10px; text-align: left; font-size: 12px; }}
th {{ background: #f4f6f8; }}
.note {{ color: #6b7785; }}
</style>
<script>{plotly.offline.get_plotlyjs()}</script></head>
<body><h1>{title}</h1>
<p class="note">Per-run median of per-instance medians; dashed lines: environment changes (driver, kernel, image,
stack); red lines: level shifts found by PELT (ruptures), kept when larger than ±{trend.threshold * 100:g}%.</p>
<div id="trend"></div>
<script>const fig = {fig}; Plotly.newPlot("trend", fig.data, fig.layout, {config});</script>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
</body></html>
"""
