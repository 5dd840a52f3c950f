"""pytest-benchmark JSON ⇄ benchbed runs.

Import: `--benchmark-json` files become a run directory (schema v1) of workload `pytest` with one target and one
instance per file, so `benchbed report` and `benchbed compare` work on it. Raw rounds (`--benchmark-save-data`)
become samples; a file with summary statistics only gives one sample per benchmark (the median, marked in
`reason`) — rounds are never invented — and run.json lists those benchmarks under `imported.summary_only`.

Export: one target's measured, valid samples become a pytest-benchmark document that `pytest-benchmark compare`
reads. Time units are converted to seconds; metrics in other units (GB/s, TFLOP/s, IOPS) have no place in a
format whose every value is a duration, so they are left out and named in the document's `benchbed.skipped`.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchbed import __version__
from benchbed.errors import ResultsFormatError
from benchbed.fileio import write_atomic
from benchbed.interop.files import check_target_name, safe_name
from benchbed.results import RunWriter, load_run, new_run_id
from benchbed.stats import measured
from benchbed.workloads.base import Sample
from benchbed.workloads.pytest_bench import samples_from_json, short_data

WORKLOAD = "pytest"
TO_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
EXPORT_VERSION = "5.1.0"  # the pytest-benchmark JSON layout written (unchanged in its fields since 3.x)


# ── import ───────────────────────────────────────────────────────────────────────────────────────────────────────
def read_document(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsFormatError(f"{file}: cannot read ({err})") from err
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultsFormatError(f"{file}:{err.lineno}: not JSON ({err.msg})", hint=HINT) from err
    if not isinstance(doc, dict):
        raise ResultsFormatError(f"{file}: top level is a JSON {type(doc).__name__}, not an object", hint=HINT)
    return doc


HINT = "pass a file written by pytest --benchmark-json=FILE (add --benchmark-save-data for raw rounds)"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _env(doc: dict[str, Any], file: Path) -> dict[str, Any]:
    """pytest-benchmark's machine_info in the fingerprint's own keys, so env comparisons line up; raw kept too."""
    mi = _dict(doc.get("machine_info"))
    cpu = _dict(mi.get("cpu"))
    return {
        "kind": "imported",
        "source": str(file),
        "hostname": mi.get("node"),
        "kernel": mi.get("release"),
        "os": {"system": mi.get("system")},
        "cpu": {"model": cpu.get("brand_raw"), "logical_cpus": cpu.get("count"), "machine": mi.get("machine")},
        "python": {"version": mi.get("python_version"), "implementation": mi.get("python_implementation")},
        "libraries": {"pytest_benchmark": doc.get("version")},
        "machine_info": mi,
        "commit_info": doc.get("commit_info"),
    }


def _parse(file: Path) -> tuple[dict[str, Any], list[Sample], list[str]]:
    """The document, its samples and its warnings (one line each)."""
    doc = read_document(file)
    try:
        samples = list(samples_from_json(doc))
        short = short_data(doc)
    except ValueError as err:
        raise ResultsFormatError(f"{file}: {err}", hint=HINT) from err
    if not samples:
        raise ResultsFormatError(f"{file}: 'benchmarks' is empty, nothing to import", hint=HINT)
    warned = []
    if short:
        warned.append(
            f"{file}: stats.data is shorter than stats.rounds for {len(short)} benchmark(s) ({'; '.join(short[:3])}"
            f"{'; …' if len(short) > 3 else ''}): only the values present are imported, so their medians may differ "
            "from the file's own"
        )
    return doc, samples, warned


def import_run(files: Sequence[Path], out_dir: Path, target: str | None = None) -> Path:
    """Write one new run directory for `files` (each file one instance: one pytest process, like one instance of
    the `pytest` workload), so `compare` sees replication; returns it. Every file is checked before anything is
    written."""
    parsed = [_parse(file) for file in files]
    first, stem = parsed[0][0], files[0].stem
    node = _dict(first.get("machine_info")).get("node")
    name = check_target_name(target) if target else safe_name(str(node or ""), "imported")
    run_id = new_run_id(f"import-{stem}")
    summary_only = sorted({s.metric for _, samples, _ in parsed for s in samples if s.reason})
    writer = RunWriter(
        out_dir / run_id,
        {
            "run_id": run_id,
            "benchbed_version": __version__,
            "suite": {"name": f"import-{stem}", "path": str(files[0]), "text": ""},
            "targets": {name: {"kind": "imported"}},
            "baseline": name,
            "seed": None,
            "plan": [],
            "imported": {
                "format": "pytest-benchmark",
                "sources": [str(f.resolve()) for f in files],
                "versions": [doc.get("version") for doc, _, _ in parsed],
                "datetimes": [doc.get("datetime") for doc, _, _ in parsed],
                "summary_only": summary_only,
                "warnings": [line for _, _, warned in parsed for line in warned],
            },
        },
    )
    status = "incomplete"
    try:
        writer.env(name, _env(first, files[0]))
        for i, (_, samples, _) in enumerate(parsed):
            base = {"target": name, "workload": WORKLOAD, "params": {}, "instance": i, "case": i}
            for sample in samples:
                writer.sample({**base, **sample.to_json()})
            writer.case({**base, "status": "ok", "reason": None, "phases": {}, "samples": len(samples)})
        status = "complete"
    finally:
        writer.finish(status, counts={"ok": len(parsed), "skipped": 0, "failed": 0})
    return writer.dir


# ── export ───────────────────────────────────────────────────────────────────────────────────────────────────────
def pb_stats(values: list[float]) -> dict[str, Any]:
    """The `stats` block as pytest-benchmark computes it (its quartile methods included), plus the raw data."""
    data = sorted(values)
    n = len(data)
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    total = math.fsum(data)
    sd_out = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    iqr_out = sum(1 for v in data if v < lo or v > hi)
    return {
        "min": data[0],
        "max": data[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_out,
        "stddev_outliers": sd_out,
        "outliers": f"{sd_out};{iqr_out}",
        "ld15iqr": data[0] if n == 1 else data[bisect_left(data, lo)],
        "hd15iqr": data[0] if n == 1 else data[bisect_right(data, hi) - 1],
        "ops": n / total if total else 0,
        "total": total,
        "data": list(values),
        "iterations": 1,
    }


def _quartiles(data: list[float]) -> tuple[float, float]:
    """pytest-benchmark's q1/q3 (Wikipedia's methods 3 for odd and 2 for even counts)."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2 == 0:
        return statistics.median(data[: n // 2]), statistics.median(data[n // 2 :])
    k, r = n // 4, n % 4
    if r == 1:
        return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
    return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]


def _machine_info(env: dict[str, Any]) -> dict[str, Any]:
    if isinstance(env.get("machine_info"), dict):  # an imported run: hand back what pytest-benchmark wrote
        return dict(env["machine_info"])
    cpu = env.get("cpu") or {}
    py = env.get("python") or {}
    return {
        "node": env.get("hostname") or "",
        "processor": cpu.get("machine") or "",
        "machine": cpu.get("machine") or "",
        "python_compiler": "",
        "python_implementation": py.get("implementation") or "",
        "python_implementation_version": py.get("version") or "",
        "python_version": py.get("version") or "",
        "python_build": [],
        "release": env.get("kernel") or "",
        "system": "Linux" if env.get("kernel") else "",
        "cpu": {"brand_raw": cpu.get("model") or "", "count": cpu.get("logical_cpus")},
        "benchbed_target_kind": env.get("kind"),
    }


def _params_text(canonical: str) -> str:
    """`{"n":256,"dtype":"float32"}` → `dtype=float32,n=256` (pytest-benchmark's `param` style)."""
    params = json.loads(canonical)
    return ",".join(f"{k}={params[k]}" for k in sorted(params)) if isinstance(params, dict) else str(params)


MEDIANS = (
    "stats.* pool every round of every instance (pytest-benchmark's way); benchbed's report and compare use the "
    "median of per-instance medians, in extra_info.benchbed_median_of_instance_medians (seconds)"
)


def _benchmark(
    workload: str, params: str, metric: str, label: str, factor: float, rows: Any, run_id: str
) -> dict[str, Any]:
    """One exported benchmark; a `pytest` workload's own names, group, params and iterations come back as they
    were recorded (labels), so `pytest-benchmark compare` lines the export up with the original file."""
    labels = next((x for x in rows["labels"] if isinstance(x, dict) and x), {}) if "labels" in rows else {}
    own = workload == WORKLOAD
    stats = pb_stats([float(v) * factor for v in rows["value"]])
    iterations = labels.get("iterations")
    stats["iterations"] = iterations if own and isinstance(iterations, int) and iterations >= 1 else 1
    per_instance = rows.groupby("instance")["value"].median() * factor
    return {
        "group": labels.get("group") if own else workload,
        "name": metric if own else label,
        "fullname": str(labels.get("fullname") or label) if own else label,
        "params": labels.get("params") if own else (json.loads(str(rows["params"].iloc[0])) or None),
        "param": labels.get("param") if own else (params or None),
        "extra_info": {
            **(_dict(labels.get("extra_info")) if own else {}),
            "unit": str(rows["unit"].iloc[0]),
            "better": str(rows["better"].iloc[0]),
            "benchbed_instances": len(per_instance),
            "benchbed_median_of_instance_medians": float(per_instance.median()),
        },
        "options": {**(_dict(labels.get("options")) if own else {}), "benchbed_run": run_id},
        "stats": stats,
    }


def build_document(run_dir: Path, target: str | None = None) -> dict[str, Any]:
    """One pytest-benchmark "benchmark" per workload + params + metric of `target` (default: the baseline)."""
    run = load_run(run_dir)
    df = run.samples
    targets = sorted(str(t) for t in df["target"].dropna().unique())
    chosen = target or str(run.meta.get("baseline") or (targets[0] if len(targets) == 1 else ""))
    if chosen not in targets:
        raise ResultsFormatError(
            f"{run_dir}: no samples for target {chosen!r}" if chosen else f"{run_dir}: several targets",
            hint=f"--target one of: {', '.join(targets) or '(none: the run has no samples)'}",
        )
    usable = measured(df[df["target"] == chosen])
    run_id = str(run.meta.get("run_id") or run_dir.name)
    if usable.empty:
        raise ResultsFormatError(f"{run_dir}: target {chosen!r} has no measured, valid samples to export")
    benchmarks: list[dict[str, Any]] = []
    skipped: list[str] = []
    groups = usable.groupby(["workload", usable["params"].map(_params_text), "metric", "unit"], sort=True)
    for (workload, params, metric, unit), rows in groups:
        label = f"{workload}[{params}]::{metric}" if params else f"{workload}::{metric}"
        factor = TO_SECONDS.get(str(unit))
        if factor is None:
            skipped.append(f"{label} ({unit})")
            continue
        if rows["reason"].map(lambda r: isinstance(r, str) and r.startswith("summary only")).any():
            skipped.append(f"{label} (summary only: no rounds to export, only a median per file)")
            continue
        benchmarks.append(_benchmark(str(workload), str(params), str(metric), label, factor, rows, run_id))
    if not benchmarks:
        raise ResultsFormatError(
            f"{run_dir}: target {chosen!r} has no time-like samples to export (left out: {', '.join(skipped) or '-'})",
            hint="pytest-benchmark files hold durations; metrics in s/ms/µs/ns are exported",
        )
    env = run.env.get(chosen, {})
    commit = env.get("commit_info") if isinstance(env.get("commit_info"), dict) else None
    imported = _dict(run.meta.get("imported"))
    dates = [d for d in imported.get("datetimes") or [] if isinstance(d, str)]
    started = dates[0] if dates else str(run.meta.get("started") or datetime.now(UTC).isoformat())
    return {
        "machine_info": _machine_info(env),
        "commit_info": commit or {"id": "unversioned", "time": None, "author_time": None, "dirty": False},
        "benchmarks": benchmarks,
        "datetime": started,
        "version": EXPORT_VERSION,
        "benchbed": {
            "version": __version__,
            "run": run_id,
            "target": chosen,
            "controller": platform.node(),
            "skipped": skipped,
            "medians": MEDIANS,
        },
    }


def export_run(run_dir: Path, dest: Path, target: str | None = None) -> tuple[Path, dict[str, Any]]:
    doc = build_document(run_dir, target)
    text = json.dumps(doc, indent=4, allow_nan=False) + "\n"
    return write_atomic(dest, text.encode()), doc
