"""The report's pages about how a run went, from run.json and cases.jsonl: failures and skips (grouped by reason),
the design (plan, seed, pilot), and each workload's timing steps."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pandas as pd

from benchbed.fmt import finite, fmt_num, params_label
from benchbed.stats import canonical_params, unfinished_by_case

LONG_VALUE = 120  # env values longer than this (or multi-line) fold into a <details>
PLAN_ROUNDS = 2  # the methodology shows the recorded order of the first rounds …
PLAN_ROWS = 60  # … at most this many instances of it per run
VERDICT_TEXT = {"regression": "✗ regression", "improvement": "✓ improvement", "equivalent": "≈ equivalent"}
SYMBOL = {"regression": "✗", "improvement": "✓", "equivalent": "≈", "inconclusive": "?"}


# ── instances, failures, design ───────────────────────────────────────────────────────────────────────────
def text(value: object, missing: str = "") -> str:
    """A cell of a ragged cases table: None and pandas' NaN padding both mean 'not recorded'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float) and value.is_integer():  # an int column padded with NaN turned float
        return str(int(value))
    return str(value)


def problems(cases: pd.DataFrame) -> list[dict[str, Any]]:
    if cases.empty or "status" not in cases.columns:
        return []
    out = []
    for rec in cases.to_dict("records"):
        if rec.get("status") == "ok":
            continue
        tail = rec.get("stderr_tail")
        out.append(
            {
                "target": text(rec.get("target"), "?"),
                "workload": text(rec.get("workload"), "?"),
                "params": params_label(rec.get("params")),
                "instance": text(rec.get("instance"), "?"),
                "status": text(rec.get("status"), "?"),
                "reason": text(rec.get("reason")),
                "stderr_tail": tail if isinstance(tail, str) and tail.strip() else None,
            }
        )
    return out


def unfinished(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per case, what no statistic includes: the samples of instances that did not finish `ok` (failed, or cut
    short by an interrupt or a killed harness). They stay in samples.jsonl; the report says how many, per case."""
    return [
        {
            "target": text(r["target"], "?"),
            "workload": text(r["workload"], "?"),
            "params": params_label(r["params"]),
            "instances": int(r["instances"]),
            "samples": int(r["samples"]),
        }
        for r in unfinished_by_case(frame).to_dict("records")
    ]


def unfinished_line(rows: list[dict[str, Any]]) -> str:
    """'7 samples from 2 unfinished instances' (totals of `unfinished`), or '' when nothing was left out."""
    n_samples, n_inst = sum(r["samples"] for r in rows), sum(r["instances"] for r in rows)
    if not rows:
        return ""
    return f"{n_samples} sample{'s' * (n_samples != 1)} from {n_inst} unfinished instance{'s' * (n_inst != 1)}"


def group_skips(probs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures one row each (each has its own stderr); skips that share a reason folded into one row that names
    the targets and workloads, so 12 instances skipped for want of a GPU read as one line. Failures come first."""
    failed = [{**p, "count": 1} for p in probs if p["status"] != "skipped"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in probs:
        if p["status"] == "skipped":
            groups.setdefault(p["reason"], []).append(p)
    skipped = []
    for reason, rows in groups.items():
        if len(rows) == 1:
            skipped.append({**rows[0], "count": 1})
            continue
        cases = list(dict.fromkeys((r["workload"], r["params"]) for r in rows))
        workloads = list(dict.fromkeys(w for w, _ in cases))
        skipped.append(
            {
                "target": ", ".join(dict.fromkeys(r["target"] for r in rows)),
                "workload": ", ".join(workloads),
                "params": cases[0][1]
                if len(cases) == 1
                else f"{len(cases)} cases"
                if len(cases) > len(workloads)
                else "",
                "instance": f"{len(rows)} instances",
                "status": "skipped",
                "reason": reason,
                "stderr_tail": None,
                "count": len(rows),
            }
        )
    return failed + skipped


def design(meta: dict[str, Any], run: str) -> list[dict[str, Any]]:
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
                "run": run,
                "workload": key[0],
                "params": params_label(key[1]),
                "repetitions": case.get("repetitions"),
                "warmup": case.get("warmup"),
            },
        )
    for key, row in per.items():
        row["instances"] = max(n for (w, p, _), n in count.items() if (w, p) == key)
    return list(per.values())


def plan_order(meta: dict[str, Any], run: str) -> dict[str, Any]:
    """The recorded order of the first rounds (instance < PLAN_ROUNDS), at most PLAN_ROWS instances."""
    plan = meta.get("plan")
    cases = [c for c in plan if isinstance(c, dict)] if isinstance(plan, list) else []
    first = [c for c in cases if isinstance(c.get("instance"), int) and c["instance"] < PLAN_ROUNDS][:PLAN_ROWS]
    rows = [
        {"index": text(c.get("index"), "?"), "target": text(c.get("target"), "?"),
         "workload": text(c.get("workload"), "?"), "params": params_label(c.get("params")),
         "instance": text(c.get("instance"), "?")}
        for c in first
    ]  # fmt: skip
    return {"run": run, "total": len(cases), "rows": rows}


def pilot(meta: dict[str, Any], run: str) -> list[dict[str, Any]]:
    """`instances: auto`: what the pilot saw per case and the N it chose; capped cases say what MDE remains."""
    raw = meta.get("pilot")
    if not isinstance(raw, dict):
        return []
    rows = []
    for key, case in raw.items():
        if not isinstance(case, dict):
            continue
        workload, _, params = str(key).partition(" ")
        metrics = case.get("metrics")
        if not isinstance(metrics, dict):
            metrics = {}
        rows.append(
            {
                "run": run,
                "workload": workload,
                "params": params_label(params),
                "pilot_instances": case.get("pilot_instances"),
                "instances": case.get("instances"),
                "capped": bool(case.get("capped")),
                "note": str(case.get("note") or ""),
                "metrics": [
                    {"metric": m, "cv": fmt_num(v.get("cv_pct")), "mde": fmt_num(v.get("mde_pct")),
                     "threshold": f"±{(finite(v.get('threshold')) or 0) * 100:g}%"}
                    for m, v in metrics.items() if isinstance(v, dict)
                ],
            }
        )  # fmt: skip
    return rows


# What a GPU job does after its boundary is up, measured by workloads inside the target: (workload, metrics in order
# of preference, label). The first metric a run has wins, e.g. a cold-cache load onto the GPU before one onto the CPU.
WORKLOAD_STEPS = (
    ("gpu.context_init", ("cuda_init",), "context init"),
    ("model.load", ("cuda_cold", "cpu_cold", "cuda_warm", "cpu_warm"), "model load"),
)


def workload_steps(inst: pd.DataFrame) -> pd.DataFrame:
    """Start-up steps that workloads measure (CUDA context init, model load), as extra phase rows for the stacked
    start-up chart: median of instance medians in seconds per target, so a bar reads create → boot → ssh → agent →
    context init → model load. The first params case in run order stands for the workload; the label names it."""
    rows: list[dict[str, Any]] = []
    for workload, metrics, label in WORKLOAD_STEPS:
        sub = inst[inst["workload"] == workload] if not inst.empty else inst
        if sub.empty:
            continue
        metric = next((m for m in metrics if (sub["metric"] == m).any()), None)
        if metric is None:
            continue
        sub = sub[(sub["metric"] == metric) & (sub["params"] == sub["params"].iloc[0])]
        params = params_label(sub["params"].iloc[0])
        name = f"{label} ({workload} {metric}{'' if params == '(default params)' else ', ' + params})"
        for target, g in sub.groupby("target", sort=False):  # both workloads report milliseconds
            rows.append({"target": str(target), "phase": name, "median_s": float(g["median"].median()) / 1e3,
                         "n": len(g)})  # fmt: skip
    rows += _serve_steps(inst)
    return pd.DataFrame(rows, columns=["target", "phase", "median_s", "n"])


SERVE_STEPS = ("interpreter", "import", "model_load", "listen", "first_request")


def _serve_steps(inst: pd.DataFrame) -> list[dict[str, Any]]:
    """serve.latency's in-target start-up (interpreter, import, model load, listen, first request): stacked after
    the controller's phases, a bar reads provision → agent → server ready → first answer (time to first
    inference). The first params case stands for the workload, as above."""
    sub = inst[inst["workload"] == "serve.latency"] if not inst.empty else inst
    if sub.empty:
        return []
    sub = sub[sub["params"] == sub["params"].iloc[0]]
    rows = []
    for step in SERVE_STEPS:
        for target, g in sub[sub["metric"] == f"start.{step}"].groupby("target", sort=False):
            name = f"serve: {step.replace('_', ' ')}"
            rows.append({"target": str(target), "phase": name, "median_s": float(g["median"].median()) / 1e3,
                         "n": len(g)})  # fmt: skip
    return rows


def instance_starts(cases: pd.DataFrame) -> str:
    """ "vm: 6 restored, 1 booted" for targets whose instances say how they started (libvirt `start: restore`):
    restored instances share the saved guest's page cache and ASLR layout, and `startup.*` ones always boot."""
    if cases.empty or "start" not in cases.columns or "target" not in cases.columns:
        return ""
    parts = []
    for target, group in cases.dropna(subset=["start"]).groupby("target", sort=False):
        counts = group["start"].value_counts()
        if "restored" in counts:
            parts.append(f"{target}: " + ", ".join(f"{counts[k]} {k}" for k in ("restored", "booted") if k in counts))
    return "; ".join(parts)
