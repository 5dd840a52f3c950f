"""Plotly figures of the report, built on the Python side and drawn by plotly.js in the page.

Figures carry summaries, never raw samples: a box is given as precomputed quartiles and Tukey whiskers of all
measured samples (so 100 000 samples cost the page nothing), and the points on it are the per-instance medians —
the unit of replication every statistic uses. All text placed in a figure is HTML-escaped first, because plotly
renders a subset of HTML in labels; the escaped text shows as typed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go  # type: ignore[import-untyped]

from benchbed.fmt import params_label
from benchbed.stats import ROW_KEYS

BASE_COLOR = "#6b7785"
PALETTE = ("#4c6a92", "#d9822b", "#3a9a5b", "#b2455e", "#7b61a8", "#2f8f9d", "#a0752d", "#6b7785", "#c25d99")
PHASE_PALETTE = ("#4c6a92", "#7fa0c7", "#d9822b", "#f0b26b", "#3a9a5b", "#8ccf9f", "#b2455e", "#e3909f", "#7b61a8")
CHART_HEIGHT = 360
# Phases that are not start-up: the workload itself, teardown, bookkeeping and the sum of everything.
NOT_STARTUP = frozenset({"workload", "settle", "teardown", "other", "total"})  # settle: the harness waiting
CONFIG: dict[str, Any] = {
    "responsive": True,
    "displaylogo": False,
    "typesetMath": False,  # no MathJax, nothing fetched
    "showLink": False,
    "showSendToCloud": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}
FONT = {
    "family": '-apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
    "size": 12,
    "color": "#1d232a",
}


@dataclass(frozen=True)
class Chart:
    """One chart of the page: its element id, a heading, and the figure as plain JSON-able data."""

    id: str
    title: str
    subtitle: str
    height: int
    figure: dict[str, Any]


def esc(text: object) -> str:
    """Text for a plotly label: plotly interprets <b>, <a href> … and entities, so escape; it shows as typed."""
    return html.escape(str(text), quote=False)


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    axis = {"gridcolor": "#e5e8ec", "linecolor": "#b8c0c8", "zerolinecolor": "#d5dbe1", "automargin": True}
    return {
        "template": "none",  # no template JSON in every figure; the look is set here
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 20, "b": 40},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "font": FONT,
        "xaxis": dict(axis),
        "yaxis": dict(axis),
        "legend": {"orientation": "h", "y": -0.18, "x": 0},
        "hoverlabel": {"font": {"family": FONT["family"]}},
        **extra,
    }


def box_stats(measured: pd.DataFrame) -> pd.DataFrame:
    """Per (workload, params, metric, target): q1, median, q3 of the measured samples and Tukey whiskers (the
    furthest samples within 1.5 IQR of the box), all vectorised — no Python loop over samples."""
    if measured.empty:
        return pd.DataFrame(columns=[*ROW_KEYS, "q1", "median", "q3", "lowerfence", "upperfence", "n", "outside"])
    g = measured.groupby(ROW_KEYS, sort=False)["value"]
    q = g.quantile(np.array([0.25, 0.5, 0.75])).unstack()
    q.columns = ["q1", "median", "q3"]
    q["n"] = g.size()
    q = q.reset_index()
    m = measured[[*ROW_KEYS, "value"]].merge(q[[*ROW_KEYS, "q1", "q3"]], on=ROW_KEYS, how="left")
    reach = 1.5 * (m["q3"] - m["q1"])
    inside = m[(m["value"] >= m["q1"] - reach) & (m["value"] <= m["q3"] + reach)]
    counts = inside.groupby(ROW_KEYS, sort=False)["value"].agg(lowerfence="min", upperfence="max", k="size")
    out = q.merge(counts.reset_index(), on=ROW_KEYS, how="left")
    out["outside"] = out["n"] - out["k"].fillna(0).astype(int)
    return out


def _axis_title(metric: str, unit: str, better: str) -> str:
    arrow = {"higher": " · ↑ higher is better", "lower": " · ↓ lower is better"}.get(better, "")
    return esc(f"{metric} [{unit}]{arrow}")


def _box(rows: Sequence[Mapping[Any, Any]], name: str, color: str) -> dict[str, Any]:
    """One box trace holding several targets' precomputed boxes (one per x category)."""
    return {
        "type": "box",
        "name": name,
        "x": [esc(r["target"]) for r in rows],
        **{k: [r[k] for r in rows] for k in ("q1", "median", "q3", "lowerfence", "upperfence")},
        "marker": {"color": color},
        "line": {"color": color, "width": 1.5},
        "fillcolor": _alpha(color, 0.2),
        "boxpoints": False,
        "hoverinfo": "x+y",
    }


def _flat_range(values: Sequence[float]) -> list[float] | None:
    """An explicit axis for a chart whose values are all one number (one tiny sample, 2.2e-7 s): plotly would
    draw it on −1..1, where it reads as zero. From zero to twice the value instead, so its size is visible."""
    finite = [float(v) for v in values if isinstance(v, int | float) and np.isfinite(v)]
    if not finite or max(finite) != min(finite) or finite[0] == 0:
        return None
    v = finite[0]
    return [0.0, 2 * v] if v > 0 else [2 * v, 0.0]


def distribution_charts(
    measured: pd.DataFrame, inst: pd.DataFrame, order: Sequence[str], baseline: str = "", start: int = 0
) -> list[tuple[tuple[str, str], Chart]]:
    """One chart per (workload, params, metric) with a box per target, keyed by (workload, params) for grouping.
    Three traces whatever the number of targets (baseline box, other boxes, instance medians): figures stay
    small and quick to build."""
    if measured.empty:
        return []
    stats = box_stats(measured)
    info = measured.drop_duplicates(ROW_KEYS[:3])[["workload", "params", "metric", "unit", "better"]]
    units = {(str(w), str(p), str(m)): (str(u), str(b)) for w, p, m, u, b in info.itertuples(index=False)}
    rank = {t: i for i, t in enumerate(order)}
    per_inst = {tuple(str(x) for x in key): g["median"].to_list() for key, g in inst.groupby(ROW_KEYS, sort=False)}
    charts: list[tuple[tuple[str, str], Chart]] = []
    for (workload, params, metric), group in stats.groupby(["workload", "params", "metric"], sort=False):
        key = (str(workload), str(params), str(metric))
        unit, better = units.get(key, ("", ""))
        rows = sorted(group.to_dict("records"), key=lambda r: rank.get(str(r["target"]), len(rank)))
        base = [r for r in rows if str(r["target"]) == baseline]
        others = [r for r in rows if str(r["target"]) != baseline]
        traces = ([_box(base, "baseline", BASE_COLOR)] if base else []) + (
            [_box(others, "target", PALETTE[0])] if others else []
        )
        xs: list[str] = []
        ys: list[float] = []
        for r in rows:
            medians = per_inst.get((*key, str(r["target"])), [])
            xs += [esc(r["target"])] * len(medians)
            ys += medians
        traces.append(
            {
                "type": "box",
                "name": "instance medians",
                "x": xs,
                "y": ys,
                "boxpoints": "all",
                "jitter": 0.35,
                "pointpos": 0,
                "fillcolor": "rgba(0,0,0,0)",
                "line": {"color": "rgba(0,0,0,0)"},
                "hoveron": "points",
                "marker": {"color": "#1d232a", "size": 6, "opacity": 0.75, "line": {"color": "#ffffff", "width": 1}},
                "hovertemplate": "%{x}<br>instance median %{y:.4g}<extra></extra>",
            }
        )
        layout = _layout(CHART_HEIGHT, boxmode="overlay", showlegend=False)
        layout["yaxis"]["title"] = {"text": _axis_title(key[2], unit, better)}
        flat = _flat_range([*ys, *(r[k] for r in rows for k in ("lowerfence", "upperfence"))])
        if flat is not None:
            layout["yaxis"]["range"] = flat
        layout["xaxis"].update(type="category", categoryorder="array", categoryarray=[esc(r["target"]) for r in rows])
        fig = go.Figure(data=traces, layout=layout)
        n = start + len(charts)
        chart = Chart(f"chart-{n}", key[2], f"[{unit}]", CHART_HEIGHT, fig.to_plotly_json())
        charts.append(((key[0], key[1]), chart))
    return charts


def _alpha(hex_color: str, a: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{a})"


def phase_chart(phases: pd.DataFrame, order: Sequence[str], n: int) -> Chart | None:
    """Stacked horizontal bars: median seconds of each start-up phase per target (controller-side clock)."""
    ph = phases[~phases["phase"].isin(NOT_STARTUP)] if not phases.empty else phases
    if ph.empty:
        return None
    targets = [t for t in order if t in set(ph["target"])]
    targets += [str(t) for t in dict.fromkeys(ph["target"]) if t not in targets]
    cell = {(str(r["target"]), str(r["phase"])): r for r in ph.to_dict("records")}
    traces = []
    for i, phase in enumerate(dict.fromkeys(str(p) for p in ph["phase"])):
        xs = [float(cell[(t, phase)]["median_s"]) if (t, phase) in cell else None for t in targets]
        ns = [int(cell[(t, phase)]["n"]) if (t, phase) in cell else 0 for t in targets]
        traces.append(
            {
                "type": "bar",
                "y": [esc(t) for t in targets],
                "x": xs,
                "customdata": ns,
                "orientation": "h",
                "name": esc(phase),
                "marker": {"color": PHASE_PALETTE[i % len(PHASE_PALETTE)]},
                "hovertemplate": f"%{{y}} · {esc(phase)}: %{{x:.3g}} s (median of %{{customdata}})<extra></extra>",
            }
        )
    height = max(220, 110 + 46 * len(targets))
    layout = _layout(height, barmode="stack", showlegend=True)
    layout["xaxis"]["title"] = {"text": "seconds (median per phase)"}
    layout["yaxis"].update(type="category", autorange="reversed")
    layout["legend"] = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "traceorder": "normal"}
    layout["margin"] = {"l": 60, "r": 20, "t": 40, "b": 40}
    fig = go.Figure(data=traces, layout=layout)
    return Chart(f"chart-{n}", "Start-up phases", "median seconds", height, fig.to_plotly_json())


def group_title(workload: str, params: str) -> tuple[str, str]:
    return workload, params_label(params)
