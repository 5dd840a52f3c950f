"""Statistics of a report (computed once, shared by HTML, Markdown and JSON) and the tables built from them.

Nothing here re-implements a statistic: medians and CIs come from `stats.summarize`, verdicts from
`verdict.compare_pairs` (one Holm family over the whole page, exactly as `benchbed compare RUN` judges), and the
environment's comparability from the run's recorded rules (`benchbed.rules`, as `benchbed compare` reads them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchbed.boundary import rank
from benchbed.errors import ResultsFormatError
from benchbed.fmt import finite, flatten, fmt_ci, fmt_num, params_label
from benchbed.report.merge import ReportInput
from benchbed.stacks.parity import DIFFERS, SideStacks, annotate
from benchbed.stats import instance_medians, summarize
from benchbed.verdict import compare_pairs

LONG_VALUE = 120  # env values longer than this (or multi-line) fold into a <details>
PLAN_ROUNDS = 2  # the methodology shows the recorded order of the first rounds …
PLAN_ROWS = 60  # … at most this many instances of it per run
VERDICT_TEXT = {"regression": "✗ regression", "improvement": "✓ improvement", "equivalent": "≈ equivalent"}
SYMBOL = {"regression": "✗", "improvement": "✓", "equivalent": "≈", "inconclusive": "?"}


@dataclass(frozen=True)
class Analysis:
    summary: pd.DataFrame  # stats.SUMMARY_COLUMNS, one row per (workload, params, metric, target)
    verdicts: pd.DataFrame  # verdict.VERDICT_COLUMNS, one row per non-baseline target and metric
    inst: pd.DataFrame  # stats.INSTANCE_COLUMNS
    targets: list[str]  # display order: baseline first

    def verdict_of(self) -> dict[tuple[str, str, str, str], dict[str, Any]]:
        return {_key(r): r for r in records(self.verdicts)}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with str keys (pandas types them as Hashable)."""
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]


def _key(r: dict[str, Any]) -> tuple[str, str, str, str]:
    return (str(r["workload"]), str(r["params"]), str(r["metric"]), str(r["target"]))


def boundaries(inp: ReportInput) -> dict[str, str]:
    """Target ▸ boundary class (bare metal … VMs), as the runs recorded it (runs before 0.3 did not)."""
    out: dict[str, str] = {}
    for run in inp.runs:
        known = run.meta.get("boundaries")
        out.update({str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {})
    return out


def _targets(inp: ReportInput, summary: pd.DataFrame) -> list[str]:
    """Baseline first, then along the isolation spectrum (bare metal, container runtimes, sandboxed runtimes, VMs)
    where the runs recorded it, in run order within a class; then any other name the data mentions."""
    names = _named(inp, summary)
    classes = boundaries(inp)
    if not classes:
        return names
    head, rest = names[:1] if inp.baseline else [], names[1:] if inp.baseline else names
    return head + sorted(rest, key=lambda t: rank(classes.get(t)))


def spectrum(inp: ReportInput, targets: list[str]) -> list[dict[str, Any]]:
    """Targets grouped by boundary class, left to right along the spectrum; [] when the runs did not record it."""
    classes = boundaries(inp)
    if not classes:
        return []
    groups: dict[str, list[str]] = {}
    for t in sorted(targets, key=lambda t: rank(classes.get(t))):
        groups.setdefault(classes.get(t, "other"), []).append(t)
    return [{"boundary": b, "targets": ts} for b, ts in groups.items()]


def _named(inp: ReportInput, summary: pd.DataFrame) -> list[str]:
    names = [inp.baseline] if inp.baseline else []
    for run in inp.runs:
        planned = run.meta.get("targets")
        names += [str(t) for t in planned] if isinstance(planned, dict) else []
    names += [str(t) for t in summary["target"]]
    if "target" in inp.cases.columns:
        names += [str(t) for t in inp.cases["target"].dropna()]
    names += list(inp.env)
    return list(dict.fromkeys(names))


def analyse(inp: ReportInput) -> Analysis:
    if inp.samples.empty and inp.cases.empty:
        raise ResultsFormatError(
            f"run {', '.join(inp.run_ids)} has no samples yet",
            hint="it may still be starting, or it stopped before the first instance finished",
        )
    summary = summarize(inp.samples, inp.baseline)
    inst = instance_medians(inp.samples)
    verdicts = pd.DataFrame()
    if not inst.empty and inp.baseline in set(inst["target"]):
        base = inst[inst["target"] == inp.baseline]
        others = [t for t in dict.fromkeys(inst["target"]) if t != inp.baseline]
        pairs = [(base, inst[inst["target"] == t]) for t in others]
        if pairs:
            info = inp.samples.drop_duplicates(["workload", "params", "metric"])
            rules = inp.rules()
            verdicts = compare_pairs(pairs, thresholds=rules.threshold_rules(), info=info)
            base_stacks = SideStacks.of(inp.cases, inp.env, inp.baseline)
            stacks = {(inp.baseline, t): (base_stacks, SideStacks.of(inp.cases, inp.env, t)) for t in others}
            verdicts = annotate(verdicts, stacks, accepted=False)
    return Analysis(summary, verdicts, inst, _targets(inp, summary))


# ── headline matrix ────────────────────────────────────────────────────────────────────────────────────────
def _cell(row: dict[str, Any], verdict: dict[str, Any] | None) -> dict[str, Any]:
    """Ratio to baseline with its CI, and a label that says which way is good for this metric."""
    ratio, low, high = row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"]
    width = None if finite(low) is None or finite(high) is None else high - low
    v = str(verdict["verdict"]) if verdict else ""
    change = finite(row["change_pct"])
    size = "—" if change is None else f"{abs(change):.1f}%" if abs(change) >= 1 else f"{abs(change):.2g}%"
    if v == "regression":
        label = f"✗ {size} worse"
    elif v == "improvement":
        label = f"✓ {size} better"
    elif v == "equivalent":
        label = f"≈ within ±{verdict['threshold'] * 100:g}%" if verdict else "≈"
    elif v == "inconclusive":
        label = "inconclusive"
    else:
        label = ""
    title = ""
    stack_differs = verdict is not None and verdict.get("stack") == DIFFERS
    if verdict:
        mde = finite(verdict["mde_pct"])
        title = f"{v}; threshold {_threshold(verdict)}; MDE {'—' if mde is None else fmt_num(mde) + '%'}"
        title += f"; {verdict['note']}" if verdict["note"] else ""
        title += f"; {verdict['stack_note']}" if stack_differs else ""
    if stack_differs:  # never shown as a plain boundary cost: the two sides ran different userland bytes
        label = f"{label} · stack differs" if label else "stack differs"
    return {
        "ratio": fmt_num(ratio, width),
        "ci": fmt_ci(low, high),
        "verdict": v,
        "symbol": SYMBOL.get(v, ""),
        "label": label,
        "title": title,
        "stack_differs": stack_differs,
    }


def headline(a: Analysis, baseline: str) -> dict[str, Any]:
    """Rows: workload (+params) × metric; columns: non-baseline targets; baseline median for scale."""
    s = a.summary
    present = set(s["target"])
    cols = [t for t in a.targets if t != baseline and t in present]
    verdicts = a.verdict_of()
    by_key = {_key(r): r for r in records(s)}
    rows: list[dict[str, Any]] = []
    for (w, p, m), g in s.groupby(["workload", "params", "metric"], sort=False):
        first = g.iloc[0]
        base = by_key.get((str(w), str(p), str(m), baseline))
        cells = []
        for t in cols:
            row = by_key.get((str(w), str(p), str(m), t))
            cells.append(None if row is None or base is None else _cell(row, verdicts.get((str(w), str(p), str(m), t))))
        rows.append(
            {
                "workload": str(w),
                "params": params_label(p),
                "metric": str(m),
                "unit": str(first["unit"]),
                "better": str(first["better"]),
                "base_median": "—" if base is None else fmt_num(base["median"], _w(base)),
                "cells": cells,
            }
        )
    counts = Counter(str(v) for v in a.verdicts["verdict"]) if not a.verdicts.empty else Counter()
    return {"targets": cols, "rows": rows, "counts": {k: counts.get(k, 0) for k in SYMBOL}}


def _w(row: dict[str, Any]) -> float | None:
    lo, hi = finite(row["ci_low"]), finite(row["ci_high"])
    return None if lo is None or hi is None else hi - lo


# ── detailed tables ────────────────────────────────────────────────────────────────────────────────────────
def sections(a: Analysis) -> list[dict[str, Any]]:
    """The per-workload tables: every statistic of every target, the verdict cell of each non-baseline row."""
    verdicts = a.verdict_of()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    blocks: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in a.summary.to_dict("records"):
        wp = (str(row["workload"]), str(row["params"]))
        sec = out.setdefault(wp, {"workload": wp[0], "params": params_label(wp[1]), "metrics": []})
        key = (*wp, str(row["metric"]))
        if key not in blocks:
            blocks[key] = {"metric": key[2], "unit": str(row["unit"]), "better": str(row["better"]), "rows": []}
            sec["metrics"].append(blocks[key])
        cell = {str(k): v for k, v in row.items()}
        v = verdicts.get((*key, str(row["target"])))
        cell["verdict"] = None
        if v is not None:
            mde = finite(v["mde_pct"])
            cell["verdict"] = {
                "verdict": str(v["verdict"]),
                "text": VERDICT_TEXT.get(str(v["verdict"]), str(v["verdict"])),
                "threshold": _threshold(v),
                "mde": "—" if mde is None else f"{fmt_num(mde)}%",
                "note": str(v["note"]),
            }
        blocks[key]["rows"].append(cell)
    return list(out.values())


SUMMARY_ONLY = "summary only"  # the `reason` prefix of an imported benchmark that had no raw rounds


def summary_only(samples: pd.DataFrame) -> list[str]:
    """Metrics with a sample imported from summary statistics alone (one value per file: pytest-benchmark's
    median, no rounds): every page that shows them says so, since their spread is across files, not rounds."""
    if samples.empty or "reason" not in samples.columns:
        return []
    marked = samples[samples["reason"].map(lambda r: isinstance(r, str) and r.startswith(SUMMARY_ONLY))]
    return sorted({str(m) for m in marked["metric"]})


def _threshold(v: Mapping[Any, Any]) -> str:
    """ "±2% (suite default)": the value that judged the row and where it came from (`benchbed.thresholds`)."""
    source = v.get("threshold_source")
    return f"±{v['threshold'] * 100:g}%" + (f" ({source})" if isinstance(source, str) and source else "")


def mde_rows(a: Analysis) -> list[dict[str, Any]]:
    rows = []
    for r in a.verdicts.to_dict("records"):
        mde = finite(r["mde_pct"])
        rows.append(
            {
                "workload": str(r["workload"]),
                "params": params_label(r["params"]),
                "metric": str(r["metric"]),
                "target": str(r["target"]),
                "n": f"{r['n_base']} / {r['n_new']}",
                "threshold": _threshold(r),
                "mde": "—" if mde is None else f"{fmt_num(mde)}%",
                "above": mde is not None and mde > r["threshold"] * 100,
                "verdict": str(r["verdict"]),
            }
        )
    return rows


# ── environment ────────────────────────────────────────────────────────────────────────────────────────────
def env_rows(env: dict[str, dict[str, Any]], targets: list[str], flagged: set[str]) -> list[dict[str, Any]]:
    # per-file stack records are summarised in the header (stacks.parity), not listed here file by file
    flat = {t: flatten({k: v for k, v in env.get(t, {}).items() if k != "stacks"}) for t in targets}
    keys = sorted({k for f in flat.values() for k in f})
    rows = []
    for key in keys:
        values = [flat[t].get(key) for t in targets]
        rows.append(
            {
                "key": key,
                "values": [{"text": v, "long": v is not None and (len(v) > LONG_VALUE or "\n" in v)} for v in values],
                "differs": len(targets) > 1 and len(set(values)) > 1,
                "flagged": key in flagged,
            }
        )
    return rows


def env_warnings(inp: ReportInput, targets: list[str]) -> list[dict[str, Any]]:
    """Fingerprint differences that make a comparison with the baseline suspect (`benchbed compare`'s rules):
    hardware between targets of one run; anything but the software under test for one target across runs."""
    base = inp.baseline
    if base not in inp.env:
        return []
    rules = inp.rules()
    out = []
    for t in targets:
        if t == base or t not in inp.env:
            continue
        (run_b, name_b), (run_t, name_t) = inp.origin.get(base, (0, base)), inp.origin.get(t, (0, t))
        across_runs = run_b != run_t and name_b == name_t
        _, warned = rules.env_diff(inp.env[base], inp.env[t], under_test=rules.under_test_runs if across_runs else None)
        for change in warned:
            out.append({"target": t, "key": change.key, "base": change.base, "new": change.new,
                        "why": "differs across runs" if across_runs else "hardware differs"})  # fmt: skip
    return out
