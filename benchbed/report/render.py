"""Run directory (or several) ▸ one self-contained HTML page, or Markdown, or the JSON summary table.

Everything shown comes from the run directories; it is text from targets we do not control, so:
  * every value in the page passes Jinja's autoescape (on for every template; StrictUndefined);
  * figures reach the page as JSON through Jinja's `tojson` (which escapes < > & '), inside
    <script type="application/json">, so no string can close the script element;
  * the raw-samples CSV sits in <script type="text/csv"> with & and < written as entities (the page's script
    turns them back before the download), so it cannot close its script element either;
  * the only unescaped text is plotly.js itself, from the installed plotly package.
The page loads nothing from the network unless `--plotly cdn` asks for plotly.js from cdn.plot.ly.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import jinja2
import pandas as pd
from markupsafe import Markup

from benchbed import __version__
from benchbed.errors import BenchbedError, ConfigError
from benchbed.fileio import write_atomic
from benchbed.fmt import (  # re-exported: the report's formatting API
    LONG_VALUE,
    ci_width,
    finite,
    flatten,
    fmt_ci,
    fmt_num,
    fmt_pct,
    params_label,
    suite_doc,
)
from benchbed.report import charts, gpunotes, model, runinfo, settlenote
from benchbed.report.csvtext import to_csv
from benchbed.report.formats import to_json, to_markdown
from benchbed.report.merge import ReportInput, combine
from benchbed.results import SCALAR_COLUMNS, RunData
from benchbed.stacks import parity
from benchbed.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, measured, startup_phases

Format = Literal["html", "md", "json"]
PlotlyMode = Literal["inline", "cdn"]
FORMATS: tuple[str, ...] = ("html", "md", "json")
PLOTLY_MODES: tuple[str, ...] = ("inline", "cdn")
SUFFIX = {"html": ".html", "md": ".md", "json": ".json"}

__all__ = [
    "LONG_VALUE",
    "build_context",
    "ci_width",
    "finite",
    "flatten",
    "fmt_ci",
    "fmt_num",
    "fmt_pct",
    "params_label",
    "render",
    "render_html",
    "write_text",
]


def _plotly_js(mode: str) -> tuple[Markup | None, str | None]:
    """(inline plotly.js, or None) and (CDN URL of the same version, or None)."""
    import plotly.offline  # type: ignore[import-untyped]

    if mode == "cdn":
        return None, f"https://cdn.plot.ly/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
    js = plotly.offline.get_plotlyjs()
    if "</script" in js.lower():  # it never has; if a release did, inlining it would break the page
        raise BenchbedError("this plotly release cannot be inlined", hint="use --plotly cdn")
    return Markup(js), None  # the library's own code, not data from a run


def samples_csv(samples: pd.DataFrame) -> str:
    """The raw samples as CSV (results.SCALAR_COLUMNS), every phase and validity, in file order: the same text
    as pandas' `to_csv`, written faster (see `csvtext`)."""
    return to_csv(samples, SCALAR_COLUMNS)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Loading and summarising 100 000 samples allocates millions of small objects and frees almost none until
    the end; the cyclic collector would rescan them over and over (~0.3 s per 100 000 samples). Nothing here
    builds reference cycles worth collecting early."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _script_text(text: str) -> Markup:
    """Text for a <script type="text/csv"> block: & and < as entities, so no '</script' or '<!--' can occur."""
    return Markup(text.replace("&", "&amp;").replace("<", "&lt;"))  # escaped right here


def _run_info(inp: ReportInput) -> list[dict[str, Any]]:
    out = []
    for label, run in zip(inp.labels, inp.runs, strict=True):
        meta = run.meta
        suite = meta["suite"] if isinstance(meta.get("suite"), dict) else {}
        agent = meta["agent"] if isinstance(meta.get("agent"), dict) else {}
        out.append(
            {
                "run_id": str(meta["run_id"]),
                "label": label,
                "suite": str(suite.get("name", "?")),
                "description": str(suite.get("description") or suite_doc(suite.get("text")).get("description") or ""),
                "status": str(meta.get("status", "unknown")),
                "status_note": str(meta.get("status_note") or ""),
                "started": meta.get("started"),
                "finished": meta.get("finished"),
                "version": meta.get("benchbed_version"),
                "agent_sha256": agent.get("sha256"),
                "seed": meta.get("seed"),
                "baseline": str(meta.get("baseline") or ""),
            }
        )
    return out


def _kinds(inp: ReportInput) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for run in inp.runs:
        specs = run.meta.get("targets")
        if isinstance(specs, dict):
            kinds.update({str(n): str(s.get("kind", "?")) for n, s in specs.items() if isinstance(s, dict)})
    for name, env in inp.env.items():
        kinds.setdefault(name, str(env.get("kind", "?")) if isinstance(env, dict) else "?")
    return kinds


def build_context(inp: ReportInput, a: model.Analysis, *, plotly: str = "inline") -> dict[str, Any]:
    """Everything the HTML template shows, as plain data."""
    runs = _run_info(inp)
    first = runs[0]
    summary = a.summary
    targets = a.targets
    kinds = _kinds(inp)
    problems = runinfo.problems(inp.cases)
    unfinished = runinfo.unfinished(inp.unfinished)
    counts = Counter(p["status"] for p in problems)

    dist = charts.distribution_charts(measured(inp.samples), a.inst, targets, inp.baseline)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for (workload, params), chart in dist:
        g = groups.setdefault((workload, params), {"workload": workload, "params": params_label(params), "charts": []})
        g["charts"].append(chart)
    phases = startup_phases(inp.cases)
    steps = runinfo.workload_steps(a.inst)
    chart_phases = pd.concat([phases, steps], ignore_index=True) if not steps.empty else phases
    phase_chart = charts.phase_chart(chart_phases, targets, len(dist))
    all_charts = [c for _, c in dist] + ([phase_chart] if phase_chart else [])

    env_targets = [t for t in targets if t in inp.env]
    warnings = model.env_warnings(inp, env_targets)
    ci_methods = set(summary["ci_method"]) | set(summary["ratio_ci_method"])
    plotly_js, plotly_src = _plotly_js(plotly)
    statuses = [r["status"] for r in runs]
    return {
        "title": f"benchbed — {first['suite']}",
        "suite": " + ".join(dict.fromkeys(r["suite"] for r in runs)),
        "suite_description": first["description"],
        "run_id": " + ".join(r["run_id"] for r in runs),
        "runs": runs,
        "merged": inp.merged,
        "run": first,
        "status": statuses[0] if len(set(statuses)) == 1 else ", ".join(statuses),
        "complete": all(s == "complete" for s in statuses),
        "baseline": inp.baseline,
        "baseline_present": inp.baseline in set(summary["target"]),
        "targets": [{"name": t, "kind": kinds.get(t, "?")} for t in targets],
        "target_groups": model.spectrum(inp, targets),
        "headline": model.headline(a, inp.baseline),
        "instance_starts": runinfo.instance_starts(inp.cases),
        "stack_line": "; ".join([parity.summary(inp.cases, targets), *parity.expected_differences(inp.env, targets)]),
        "settle_line": settlenote.summary(inp.cases, targets),
        "dist_groups": list(groups.values()),
        "phase_chart": phase_chart,
        "phases": _phase_table(phases, targets),
        "sections": model.sections(a),
        "has_cold": bool((summary["n_cold"] > 0).any()) if not summary.empty else False,
        "fallback_ci": any(str(m).endswith(("-samples", "-mixed")) for m in ci_methods),
        "env_targets": env_targets,
        "env_rows": model.env_rows(inp.env, env_targets, {w["key"] for w in warnings}),
        "env_warnings": warnings,
        "problems": runinfo.group_skips(problems),
        "gpu_sample_notes": gpunotes.sample_notes(inp.samples),
        "gpu_env_notes": gpunotes.env_notes(inp.env, env_targets),
        "summary_only": model.summary_only(inp.samples),
        "n_failed": counts.get("failed", 0),
        "n_skipped": counts.get("skipped", 0),
        "n_cases": len(inp.cases),
        "unfinished": unfinished,
        "unfinished_line": runinfo.unfinished_line(unfinished),
        "design": [
            row for label, run in zip(inp.labels, inp.runs, strict=True) for row in runinfo.design(run.meta, label)
        ],
        "plan_orders": [runinfo.plan_order(run.meta, label) for label, run in zip(inp.labels, inp.runs, strict=True)],
        "pilot": [
            row for label, run in zip(inp.labels, inp.runs, strict=True) for row in runinfo.pilot(run.meta, label)
        ],
        "mde_rows": model.mde_rows(a),
        "confidence": DEFAULT_CONFIDENCE,
        "n_resamples": DEFAULT_RESAMPLES,
        "stats_seed": DEFAULT_SEED,
        "charts": all_charts,
        "chart_data": {"config": charts.CONFIG, "charts": [{"id": c.id, "figure": c.figure} for c in all_charts]},
        "plotly_js": plotly_js,
        "plotly_src": plotly_src,
        "csv": _script_text(samples_csv(inp.samples)),
        "csv_name": f"{first['run_id'] if not inp.merged else 'merged-' + '+'.join(inp.labels)}-samples.csv",
        "n_samples": len(inp.samples),
        "renderer_version": __version__,
    }


def _phase_table(ph: pd.DataFrame, targets: list[str]) -> dict[str, Any]:
    cell = {(str(r["target"]), str(r["phase"])): r for r in ph.to_dict("records")}
    phases = list(dict.fromkeys(str(p) for p in ph["phase"]))
    cols = [t for t in targets if any((t, p) in cell for p in phases)]
    rows = [
        {
            "phase": p,
            "cells": [
                {"median": cell[(t, p)]["median_s"], "n": cell[(t, p)]["n"]} if (t, p) in cell else None for t in cols
            ],
        }
        for p in phases
    ]
    return {"targets": cols, "rows": rows}


def _json_dumps(obj: Any, **kwargs: Any) -> str:
    """`tojson`'s serialiser: plotly's encoder (numpy arrays, NaN ▸ null); Jinja then escapes < > & '."""
    from plotly.utils import PlotlyJSONEncoder  # type: ignore[import-untyped]

    return json.dumps(obj, cls=PlotlyJSONEncoder, **kwargs)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("benchbed", "report/templates"),
        autoescape=True,  # every template, whatever its file name: all data is untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_num, pct=fmt_pct, ci=fmt_ci)
    env.globals.update(width=ci_width)
    env.policies["json.dumps_function"] = _json_dumps
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":")}
    return env


def _input(runs: RunData | Sequence[RunData] | ReportInput) -> ReportInput:
    if isinstance(runs, ReportInput):
        return runs
    return combine([runs] if isinstance(runs, RunData) else list(runs))


def render_html(runs: RunData | Sequence[RunData] | ReportInput, *, plotly: str = "inline") -> str:
    inp = _input(runs)
    context = build_context(inp, model.analyse(inp), plotly=plotly)
    return _environment().get_template("report.html.j2").render(context)


def check_options(fmt: str, plotly: str) -> None:
    """Refuse an unknown format or plotly mode before any run is read."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    if plotly not in PLOTLY_MODES:
        raise ConfigError(f"unknown --plotly mode {plotly!r}", hint=f"one of {', '.join(PLOTLY_MODES)}")


def render(runs: RunData | Sequence[RunData] | ReportInput, fmt: str = "html", *, plotly: str = "inline") -> str:
    """The report as text in one of FORMATS."""
    check_options(fmt, plotly)
    inp = _input(runs)
    if fmt == "html":
        return render_html(inp, plotly=plotly)
    a = model.analyse(inp)
    return to_markdown(inp, a) if fmt == "md" else to_json(inp, a)


def write_text(text: str, dest: Path) -> Path:
    """Write a report atomically (`benchbed.fileio`), creating reports/ when needed."""
    return write_atomic(dest, text, make_parents=True)


def default_path(run_ids: Sequence[str], fmt: str) -> Path:
    """reports/<run-id>.html; several runs: reports/<first>+<second>….html (or <first>+N-more when long)."""
    name = "+".join(run_ids) if len(run_ids) <= 3 else f"{run_ids[0]}+{len(run_ids) - 1}-more"
    return Path("reports") / f"{name}{SUFFIX.get(fmt, '.html')}"
