"""The report as Markdown (READMEs, $GITHUB_STEP_SUMMARY) and as JSON (the summary table, for other tools).

Markdown has no autoescape: every name from a run passes `md()`, which makes HTML, table cells and inline code
out of reach of a hostile target or workload name.
"""

from __future__ import annotations

import json
import math
from typing import Any

from benchbed.fmt import fmt_ci, fmt_num, md, params_label
from benchbed.report import gpunotes, settlenote
from benchbed.report.merge import ReportInput
from benchbed.report.model import SYMBOL, Analysis, headline, mde_rows, spectrum, summary_only
from benchbed.report.runinfo import group_skips, instance_starts, problems, unfinished, unfinished_line
from benchbed.stacks import parity

JSON_SCHEMA = 1


def _direction(better: str) -> str:
    return {"higher": "↑", "lower": "↓"}.get(better, "")


def _medians(a: Analysis) -> list[str]:
    """Every target's median [95% CI] (instances): the numbers behind the ratios, and all a one-target run has."""
    if a.summary.empty:
        return []
    targets = [t for t in a.targets if t in set(a.summary["target"])]
    head = ["case", "metric", *(md(t) for t in targets)]
    out = ["", "## Medians [95% CI] (instances)", "", "| " + " | ".join(head) + " |"]
    out.append("|" + "---|" * 2 + "---:|" * len(targets))
    cell: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in a.summary.to_dict("records"):
        key = (str(r["workload"]), str(r["params"]), str(r["metric"]))
        width = r["ci_high"] - r["ci_low"]
        text = f"{fmt_num(r['median'], width)} {fmt_ci(r['ci_low'], r['ci_high'])} ({int(r['n_instances'])})"
        row = cell.setdefault(key, {"unit": str(r["unit"]), "better": str(r["better"])})
        row[str(r["target"])] = text
    for (workload, params, metric), row in cell.items():
        case = f"{md(workload)} {md(params_label(params))}"
        label = f"{md(metric)} ({md(row['unit'])} {_direction(row['better'])})"
        out.append("| " + " | ".join([case, label, *(row.get(t, "—") for t in targets)]) + " |")
    return out


def to_markdown(inp: ReportInput, a: Analysis) -> str:
    first = inp.runs[0].meta
    suite = first.get("suite") if isinstance(first.get("suite"), dict) else {}
    title = md(suite.get("name", "?")) if suite else "?"
    statuses = [str(r.meta.get("status", "unknown")) for r in inp.runs]
    probs = problems(inp.cases)
    failed = sum(p["status"] == "failed" for p in probs)
    skipped = sum(p["status"] == "skipped" for p in probs)
    n_cases = len(inp.cases)
    lines = [f"# benchbed report — {title}", ""]
    for rid, status in zip(inp.run_ids, statuses, strict=True):
        lines.append(f"- run {md(rid)} — **{md(status)}**")
    base = md(inp.baseline) or "—"
    plural = "s" * (n_cases != 1)
    lines.append(f"- {n_cases} instance{plural}: {failed} failed, {skipped} skipped · baseline **{base}**")
    left = unfinished(inp.unfinished)
    if left:
        lines.append(f"- {unfinished_line(left)} left out of the statistics (kept in samples.jsonl; see below)")
    if starts := instance_starts(inp.cases):
        lines.append(f"- VM instances restored from a saved guest (the rest booted): {md(starts)}")
    if any(s != "complete" for s in statuses):
        lines.append("")
        lines.append("> ⚠ **Incomplete run**: the numbers cover only the instances that completed.")
    marked = summary_only(inp.samples)
    if marked:
        lines += ["", f"> ⚠ **Summary only**: {len(marked)} benchmark(s) came from pytest-benchmark files without raw "
                  "rounds (one value per file, its median; spreads and CIs are across files, not rounds): "
                  + ", ".join(md(m) for m in marked)]  # fmt: skip
    h = headline(a, inp.baseline)
    groups = spectrum(inp, a.targets)
    if groups:
        text = " → ".join(f"{md(g['boundary'])}: {', '.join(md(t) for t in g['targets'])}" for g in groups)
        lines.append(f"- Isolation spectrum: {text}")
    lines += ["", f"- Stack: {md(parity.summary(inp.cases, a.targets))}"]
    lines += [f"- Expected difference: {md(note)}" for note in parity.expected_differences(inp.env, a.targets)]
    for t in a.targets:  # a target's own caveat (a TCG guest); the HTML shows it in its environment table
        caveat = (inp.env.get(t) or {}).get("libvirt", {}).get("warning")
        lines += [f"- Caveat, {md(t)}: {md(str(caveat))}"] if caveat else []
    settle = settlenote.summary(inp.cases, a.targets)
    lines += [f"- Quiet start: {md(settle)}"] if settle else []
    lines += ["", "## Headline: ratio to the baseline [95% CI]", ""]
    if h["rows"] and h["targets"]:
        head = ["case", "metric", f"{md(inp.baseline)} median", *(md(t) for t in h["targets"])]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
        for r in h["rows"]:
            cells = []
            for c in r["cells"]:
                if c is None:
                    cells.append("—")
                    continue
                sym = f"{c['symbol']} " if c["symbol"] else ""
                text = f"{sym}{c['ratio']} {c['ci']}" + (" (stack differs)" if c["stack_differs"] else "")
                cells.append(f"**{text}**" if c["verdict"] in ("regression", "improvement") else text)
            case = f"{md(r['workload'])} {md(r['params'])}"
            metric = f"{md(r['metric'])} ({md(r['unit'])} {_direction(r['better'])})"
            lines.append("| " + " | ".join([case, metric, r["base_median"], *cells]) + " |")
        counts = h["counts"]
        lines += [
            "",
            "✗ regression · ✓ improvement (significant: the ratio's CI excludes 1 and Mann–Whitney agrees after Holm) "
            "· ≈ equivalent within the threshold (TOST) · ? inconclusive. "
            + ", ".join(f"{counts[k]} {k}" for k in ("regression", "improvement", "equivalent", "inconclusive")),
        ]
    else:
        lines.append("No ratios: " + ("no measured samples." if a.summary.empty else "only the baseline was measured."))
    lines += _medians(a)
    lines += _thresholds(a)
    lines += ["", "## Failures and skips", ""]
    if probs:
        lines += ["| target | workload | params | instance | status | reason |", "|---|---|---|---:|---|---|"]
        for p in group_skips(probs):
            cells = [md(p[k]) for k in ("target", "workload", "params", "instance", "status", "reason")]
            lines.append("| " + " | ".join(cells) + " |")
    elif not left:
        lines.append("Every instance ran to completion.")
    if left:
        lines += ["", f"Left out of the statistics: {unfinished_line(left)} (kept on disk, in no statistic).", ""]
        lines += ["| target | workload | params | unfinished instances | samples left out |", "|---|---|---|---:|---:|"]
        for u in left:
            cells = [md(u[k]) for k in ("target", "workload", "params", "instances", "samples")]
            lines.append("| " + " | ".join(cells) + " |")
    lines += _gpu_notes(inp, a)
    seeds = ", ".join(md(r.meta.get("seed", "—")) for r in inp.runs)
    lines += [
        "",
        "## Method",
        "",
        f"Median of per-instance medians; 95% BCa bootstrap CIs over instances; Mann–Whitney U on instance medians "
        f"with Holm over the page; TOST equivalence at each metric's threshold; plan seed {seeds}. "
        "Details: the HTML report (`benchbed report RUN`) and docs/methodology.md.",
    ]
    return "\n".join(lines) + "\n"


def _gpu_notes(inp: ReportInput, a: Analysis) -> list[str]:
    """The GPU notes section, only when there is something to say (a CPU report is unchanged)."""
    rows = gpunotes.sample_notes(inp.samples)
    envs = gpunotes.env_notes(inp.env, [t for t in a.targets if t in inp.env])
    if not rows and not envs:
        return []
    lines = ["", "## GPU notes", ""]
    if rows:
        lines += ["| target | workload | params | metric | samples | detail |", "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                "| " + " | ".join(md(r[k]) for k in ("target", "workload", "params", "metric", "note", "detail")) + " |"
            )
    lines += [""] * bool(rows and envs) + [f"- {md(n['target'])}: {md(n['note'])}" for n in envs]
    return lines


def _thresholds(a: Analysis) -> list[str]:
    """Per verdict row: the threshold that judged it, its source, and the MDE it is to be read against."""
    rows = mde_rows(a)
    if not rows:
        return []
    lines = ["", "## Verdicts: threshold (source) and MDE", ""]
    lines += [
        "| case | metric | target | instances | threshold (source) | MDE | verdict |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for r in rows:
        cells = [f"{r['workload']} {r['params']}", r["metric"], r["target"], r["n"], r["threshold"], r["mde"]]
        lines.append("| " + " | ".join(md(c) for c in [*cells, r["verdict"]]) + " |")
    return lines


def _num(x: object) -> float | int | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int):
        return x
    try:
        f = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


NUMERIC = ("median", "ci_low", "ci_high", "q1", "q3", "p95", "p99", "min", "max", "cold", "ratio", "ratio_ci_low",
           "ratio_ci_high", "change_pct", "better_ratio", "better_ratio_ci_low", "better_ratio_ci_high")  # fmt: skip
COUNTS = ("n_instances", "n_samples", "n_invalid", "n_cold")
VERDICT_FIELDS = ("threshold", "mde_pct", "p_mwu", "p_mwu_holm", "min_p", "p_tost")


def to_json(inp: ReportInput, a: Analysis) -> str:
    """{"schema": 1, "run_ids", "baseline", "rows": [...]} — one row per (workload, params, metric, target);
    verdict fields are null on the baseline's rows; NaN and infinities are null."""
    verdicts = a.verdict_of()
    rows: list[dict[str, Any]] = []
    for r in a.summary.to_dict("records"):
        key = (str(r["workload"]), str(r["params"]), str(r["metric"]), str(r["target"]))
        try:
            params: Any = json.loads(key[1])
        except json.JSONDecodeError:
            params = key[1]
        row: dict[str, Any] = {
            "target": key[3],
            "workload": key[0],
            "params": params,
            "params_label": params_label(key[1]),
            "metric": key[2],
            "unit": str(r["unit"]),
            "better": str(r["better"]),
            "is_baseline": bool(r["is_baseline"]),
        }
        row.update({k: _num(r[k]) for k in NUMERIC})
        row.update({k: int(r[k]) for k in COUNTS})
        row.update(ci_method=str(r["ci_method"]), ratio_ci_method=str(r["ratio_ci_method"]))
        v = verdicts.get(key)
        row["verdict"] = str(v["verdict"]) if v else None
        row.update({k: (_num(v[k]) if v else None) for k in VERDICT_FIELDS})
        row["threshold_source"] = str(v["threshold_source"]) if v else None
        row["note"] = str(v["note"]) if v else None
        rows.append(row)
    probs = problems(inp.cases)
    left = unfinished(inp.unfinished)
    doc = {
        "schema": JSON_SCHEMA,
        "run_ids": inp.run_ids,
        "status": [str(r.meta.get("status", "unknown")) for r in inp.runs],
        "baseline": inp.baseline or None,
        "targets": a.targets,
        "counts": {
            "instances": len(inp.cases),
            "failed": sum(p["status"] == "failed" for p in probs),
            "skipped": sum(p["status"] == "skipped" for p in probs),
            "unfinished_instances": sum(u["instances"] for u in left),
            "unfinished_samples": sum(u["samples"] for u in left),
            **{f"verdict_{k}": v for k, v in headline(a, inp.baseline)["counts"].items()},
        },
        "rows": rows,
        "problems": probs,
        "unfinished": left,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


__all__ = ["SYMBOL", "md", "to_json", "to_markdown"]
