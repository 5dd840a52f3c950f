"""`benchbed history --html`: one self-contained page (plotly.js inlined, nothing fetched) in the report's style.

Per series a line of per-run medians; environment changes are dashed vertical lines labelled with what changed,
level shifts solid red ones with the change in percent. Every text placed in the figure is escaped (`charts.esc`);
the page's own text goes through html.escape and the figure JSON cannot close its <script>.
"""

from __future__ import annotations

import html
import json
from typing import Any

from benchbed.history.query import Trend
from benchbed.history.table import HEADERS, label, table_rows
from benchbed.report.charts import CONFIG, FONT, PALETTE, _layout, esc

SHIFT_COLOR = "#b2455e"
ENV_COLOR = "#6b7785"


def figure(trend: Trend) -> dict[str, Any]:
    traces: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    marked: set[tuple[str, str]] = set()
    for k, s in enumerate(trend.series):
        color = PALETTE[k % len(PALETTE)]
        x = [ts.isoformat() for ts in s.points["started"]]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": esc(label(s)),
                "x": x,
                "y": [float(v) for v in s.points["value"]],
                "text": [esc(r) for r in s.points["run_id"]],
                "hovertemplate": "%{text}<br>%{y:.4g} " + esc(trend.unit) + "<extra>" + esc(label(s)) + "</extra>",
                "line": {"color": color, "width": 1.5},
                "marker": {"color": color, "size": 6},
            }
        )
        for e in s.env_changes:
            if (x[e.index], e.text()) in marked:  # the same upgrade on every host of a group: one mark
                continue
            marked.add((x[e.index], e.text()))
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


def _vline(x: str, color: str, dash: str) -> dict[str, Any]:
    return {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
            "line": {"color": color, "width": 1.2, "dash": dash}}  # fmt: skip


def _note(x: str, text: str, color: str, y: float) -> dict[str, Any]:
    return {"x": x, "xref": "x", "y": y, "yref": "paper", "yanchor": "bottom", "text": text, "showarrow": False,
            "font": {"size": 10, "color": color}}  # fmt: skip


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
stack); red lines: level shifts found by PELT (ruptures), kept when larger than
{html.escape(trend.threshold_label)}.</p>
<div id="trend"></div>
<script>const fig = {fig}; Plotly.newPlot("trend", fig.data, fig.layout, {config});</script>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
</body></html>
"""
