"""Run directory ▸ one self-contained HTML file (inline CSS, no scripts, no external resources).

Everything shown comes from the run directory; every value passes through Jinja's autoescaping, because target
names, params, reasons and stderr tails are text from targets we do not control.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from benchbed import __version__
from benchbed.errors import BenchbedError, ResultsFormatError
from benchbed.results import RunData
from benchbed.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    canonical_params,
    instance_medians,
    startup_phases,
    summarize,
)
from benchbed.verdict import compare_pairs

LONG_VALUE = 120  # env values longer than this (or multi-line) fold into a <details>
MAX_EXTRA_DIGITS = 4


# ── formatting (Jinja filters) ─────────────────────────────────────────────────────────────────────────────
def _finite(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def fmt_num(x: object, width: object = None, sign: bool = False) -> str:
    """3 significant digits, or more when `width` (a CI's width) needs them to stay visible; '—' if missing.

    Plain notation between 1e-3 and 1e6, scientific outside.
    """
    f = _finite(x)
    if f is None:
        return "—"
    if f == 0:
        return "0"
    plus = "+" if sign and f > 0 else ""
    a = abs(f)
    decimals = 2 - math.floor(math.log10(a))
    w = _finite(width)
    if w is not None and w > 0:  # show the CI's width to 2 significant digits, at most 4 digits more than usual
        decimals = max(decimals, min(1 - math.floor(math.log10(w)), decimals + MAX_EXTRA_DIGITS))
    if a >= 1e6 or a < 1e-3:
        return f"{plus}{f:.{decimals + math.floor(math.log10(a)) + 1}g}"
    return f"{plus}{round(f, decimals):,.{max(decimals, 0)}f}"


def fmt_pct(x: object) -> str:
    f = _finite(x)
    return "—" if f is None else f"{fmt_num(f, sign=True)}%"


def fmt_ci(low: object, high: object) -> str:
    lo, hi = _finite(low), _finite(high)
    if lo is None or hi is None:
        return "—"
    return f"[{fmt_num(lo, hi - lo)}, {fmt_num(hi, hi - lo)}]"


def _width(low: object, high: object) -> float | None:
    lo, hi = _finite(low), _finite(high)
    return None if lo is None or hi is None else hi - lo


def params_label(params: object) -> str:
    """{"n": 256, "dtype": "f4"} ▸ 'n=256, dtype=f4' — the canonical JSON is precise but noisy to read."""
    try:
        obj = json.loads(canonical_params(params))
    except json.JSONDecodeError:
        return str(params)
    if not isinstance(obj, dict):
        return str(params)
    if not obj:
        return "(default params)"
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in obj.items())


# ── view model ─────────────────────────────────────────────────────────────────────────────────────────────
@dataclass
class MetricBlock:
    metric: str
    unit: str
    better: str
    rows: list[dict[str, Any]]


@dataclass
class Section:
    workload: str
    params: str
    metrics: list[MetricBlock] = field(default_factory=list)


VERDICT_TEXT = {"regression": "✗ regression", "improvement": "✓ improvement", "equivalent": "≈ equivalent"}


def _verdicts(run: RunData, baseline: str, thresholds: dict[str, float]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Verdict of every non-baseline target vs the baseline, per (workload, params, metric, target): one Holm family
    over the whole page, exactly as `benchbed compare RUN` would judge it (rules in `benchbed.verdict`)."""
    inst = instance_medians(run.samples)
    if inst.empty or baseline not in set(inst["target"]):
        return {}
    base = inst[inst["target"] == baseline]
    others = [t for t in dict.fromkeys(inst["target"]) if t != baseline]
    pairs = [(base, inst[inst["target"] == t]) for t in others]
    info = run.samples.assign(params=run.samples["params"].map(canonical_params))
    table = compare_pairs(pairs, thresholds=thresholds, info=info) if pairs else pd.DataFrame()
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in table.to_dict("records"):
        mde = _finite(r["mde_pct"])
        out[(str(r["workload"]), str(r["params"]), str(r["metric"]), str(r["target"]))] = {
            "verdict": str(r["verdict"]),
            "text": VERDICT_TEXT.get(str(r["verdict"]), str(r["verdict"])),
            "threshold": f"±{r['threshold'] * 100:g}%",
            "mde": "—" if mde is None else f"{fmt_num(mde)}%",
            "note": str(r["note"]),
        }
    return out


def _sections(summary: pd.DataFrame, verdicts: dict[tuple[str, ...], dict[str, Any]] | None = None) -> list[Section]:
    sections: dict[tuple[str, str], Section] = {}
    blocks: dict[tuple[str, str, str], MetricBlock] = {}
    for row in summary.to_dict("records"):
        wp = (str(row["workload"]), str(row["params"]))
        sec = sections.setdefault(wp, Section(wp[0], params_label(wp[1])))
        key = (*wp, str(row["metric"]))
        if key not in blocks:
            blocks[key] = MetricBlock(str(row["metric"]), str(row["unit"]), str(row["better"]), [])
            sec.metrics.append(blocks[key])
        cell = {str(k): v for k, v in row.items()}
        cell["verdict"] = (verdicts or {}).get((*key, str(row["target"])))
        blocks[key].rows.append(cell)
    return list(sections.values())


def flatten(data: object, prefix: str = "") -> dict[str, str]:
    """Nested dicts/lists ▸ {'gpus.0.name': 'H100', ...}; scalars as JSON except plain strings."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        if not data and prefix:
            out[prefix] = "{}"
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list):
        if all(not isinstance(v, dict | list) for v in data):
            out[prefix] = ", ".join(v if isinstance(v, str) else json.dumps(v) for v in data) if data else "[]"
        else:
            for i, v in enumerate(data):
                out.update(flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = data if isinstance(data, str) else json.dumps(data, default=str)
    return out


def _env_rows(env: dict[str, dict[str, Any]], targets: list[str]) -> list[dict[str, Any]]:
    flat = {t: flatten(env.get(t, {})) for t in targets}
    keys = sorted({k for f in flat.values() for k in f})
    rows = []
    for key in keys:
        values = [flat[t].get(key) for t in targets]
        rows.append(
            {
                "key": key,
                "values": [{"text": v, "long": v is not None and (len(v) > LONG_VALUE or "\n" in v)} for v in values],
                "differs": len(targets) > 1 and len(set(values)) > 1,
            }
        )
    return rows


def _phase_table(cases: pd.DataFrame, targets: list[str]) -> dict[str, Any]:
    ph = startup_phases(cases)
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


def _text(value: object, missing: str = "") -> str:
    """A cell of a ragged cases table: None and pandas' NaN padding both mean 'not recorded'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float) and value.is_integer():  # an int column padded with NaN turned float
        return str(int(value))
    return str(value)


def _problems(cases: pd.DataFrame) -> list[dict[str, Any]]:
    if cases.empty or "status" not in cases.columns:
        return []
    out = []
    for rec in cases.to_dict("records"):
        if rec.get("status") == "ok":
            continue
        tail = rec.get("stderr_tail")
        out.append(
            {
                "target": _text(rec.get("target"), "?"),
                "workload": _text(rec.get("workload"), "?"),
                "params": params_label(rec.get("params")),
                "instance": _text(rec.get("instance"), "?"),
                "status": _text(rec.get("status"), "?"),
                "reason": _text(rec.get("reason")),
                "stderr_tail": tail if isinstance(tail, str) and tail.strip() else None,
            }
        )
    return out


def _design(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Instances / repetitions / warm-up per workload × params, from the recorded plan."""
    plan = meta.get("plan")
    if not isinstance(plan, list):
        return []
    per: dict[tuple[str, str], dict[str, Any]] = {}
    count: Counter[tuple[str, str, str]] = Counter()
    for case in plan:
        if not isinstance(case, dict):
            continue
        key = (str(case.get("workload")), canonical_params(case.get("params")))
        count[(*key, str(case.get("target")))] += 1
        per.setdefault(
            key,
            {
                "workload": key[0],
                "params": params_label(key[1]),
                "repetitions": case.get("repetitions"),
                "warmup": case.get("warmup"),
            },
        )
    for key, row in per.items():
        row["instances"] = max(n for (w, p, _), n in count.items() if (w, p) == key)
    return list(per.values())


def thresholds_from_text(text: object) -> dict[str, float]:
    """`thresholds:` from the suite text recorded in run.json (older runs and suites have none)."""
    if not isinstance(text, str):
        return {}
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    raw = doc.get("thresholds") if isinstance(doc, dict) else None
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}


def _pilot(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """`instances: auto`: what the pilot saw per case and the N it chose; capped cases say what MDE remains."""
    pilot = meta.get("pilot")
    if not isinstance(pilot, dict):
        return []
    rows = []
    for key, case in pilot.items():
        if not isinstance(case, dict):
            continue
        workload, _, params = str(key).partition(" ")
        metrics = case.get("metrics")
        if not isinstance(metrics, dict):
            metrics = {}
        rows.append(
            {
                "workload": workload,
                "params": params_label(params),
                "pilot_instances": case.get("pilot_instances"),
                "instances": case.get("instances"),
                "capped": bool(case.get("capped")),
                "note": str(case.get("note") or ""),
                "metrics": [
                    {"metric": m, "cv": fmt_num(v.get("cv_pct")), "mde": fmt_num(v.get("mde_pct")),
                     "threshold": f"±{v.get('threshold', 0) * 100:g}%"}
                    for m, v in metrics.items() if isinstance(v, dict)
                ],
            }
        )  # fmt: skip
    return rows


def _targets(run: RunData, summary: pd.DataFrame, baseline: str) -> list[str]:
    """Baseline first, then the planned targets in run order, then any other name the data mentions."""
    names = [baseline] if baseline else []
    names += [str(t) for t in (run.meta.get("targets") or {})]
    names += [str(t) for t in summary["target"]]
    if "target" in run.cases.columns:
        names += [str(t) for t in run.cases["target"]]
    names += list(run.env)
    return list(dict.fromkeys(names))


def build_context(run: RunData) -> dict[str, Any]:
    """Everything the template shows, as plain data (kept separate so other renderers can reuse it)."""
    meta = run.meta
    if run.samples.empty and run.cases.empty:
        raise ResultsFormatError(
            f"run {meta.get('run_id') or run.dir.name} has no samples yet",
            hint="it may still be starting, or it stopped before the first instance finished",
        )
    baseline = str(meta.get("baseline") or "")
    summary = summarize(run.samples, baseline)
    suite = meta["suite"] if isinstance(meta.get("suite"), dict) else {}
    kinds = {str(n): str(s.get("kind", "?")) for n, s in (meta.get("targets") or {}).items() if isinstance(s, dict)}
    targets = _targets(run, summary, baseline)
    status = str(meta.get("status", "unknown"))
    problems = _problems(run.cases)
    counts = Counter(p["status"] for p in problems)
    ci_methods = set(summary["ci_method"]) | set(summary["ratio_ci_method"])
    return {
        "title": f"benchbed — {suite.get('name', '?')}",
        "suite": suite.get("name", "?"),
        "suite_description": suite.get("description", ""),
        "run_id": str(meta.get("run_id") or run.dir.name),
        "status": status,
        "complete": status == "complete",
        "started": meta.get("started"),
        "finished": meta.get("finished"),
        "version": meta.get("benchbed_version"),
        "agent_sha256": (meta.get("agent") or {}).get("sha256"),
        "seed": meta.get("seed"),
        "baseline": baseline,
        "baseline_present": baseline in set(summary["target"]),
        "targets": [{"name": t, "kind": kinds.get(t, run.env.get(t, {}).get("kind", "?"))} for t in targets],
        "sections": _sections(summary, _verdicts(run, baseline, thresholds_from_text(suite.get("text")))),
        "pilot": _pilot(meta),
        "has_cold": bool((summary["n_cold"] > 0).any()) if not summary.empty else False,
        "phases": _phase_table(run.cases, targets),
        "env_targets": [t for t in targets if t in run.env],
        "env_rows": _env_rows(run.env, [t for t in targets if t in run.env]),
        "problems": problems,
        "n_failed": counts.get("failed", 0),
        "n_skipped": counts.get("skipped", 0),
        "n_cases": len(run.cases),
        "design": _design(meta),
        "confidence": DEFAULT_CONFIDENCE,
        "n_resamples": DEFAULT_RESAMPLES,
        "stats_seed": DEFAULT_SEED,
        "fallback_ci": any(str(m).endswith(("-samples", "-mixed")) for m in ci_methods),
        "renderer_version": __version__,
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("benchbed", "report/templates"),
        autoescape=True,  # every template, whatever its file name: all data is untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_num, pct=fmt_pct, ci=fmt_ci)
    env.globals.update(width=_width)
    return env


def render_html(run: RunData) -> str:
    return _environment().get_template("report.html.j2").render(build_context(run))


def write_report(run: RunData, dest: Path) -> Path:
    """Render the run to `dest` atomically (temp file + rename), so a reader never sees half a report."""
    html = render_html(run)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(html)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(dest)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise BenchbedError(f"{dest}: cannot write the report ({err.strerror or err})") from err
    return dest
