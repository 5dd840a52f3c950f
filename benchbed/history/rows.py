"""A loaded run directory ▸ the rows of the results database (pure: no database here, so it is unit-testable).

The per-instance medians are computed with `stats.instance_medians`, the same function every verdict uses, so a
run rebuilt from the database (`lastgood`) is judged exactly as its directory would be.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pandas as pd

from benchbed.fmt import flatten
from benchbed.results import RunData
from benchbed.rules import VOLATILE
from benchbed.stats import canonical_params, instance_medians

InstanceKey = tuple[str, str, str, int]  # target, workload, params (canonical), instance
IMAGE_KEYS = ("docker.image_id", "*.image_id", "docker.image", "*.image", "image")


@dataclass(frozen=True)
class RunRows:
    run: dict[str, Any]
    targets: list[dict[str, Any]]
    instances: dict[InstanceKey, dict[str, Any]]
    medians: list[tuple[InstanceKey, dict[str, Any]]]
    samples: pd.DataFrame  # key columns + sample columns; empty when raw samples are left out


def digest(run_dir: Path) -> str:
    """What was published, byte for byte: the same run published twice has the same digest."""
    h = hashlib.sha256()
    for name in ("samples.jsonl", "cases.jsonl"):
        path = run_dir / name
        h.update(name.encode() + b"\0")
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def _time(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _measured_at(meta: dict[str, Any]) -> datetime | None:
    """When the run measured: its start, or for an imported pytest-benchmark run the earliest `datetime` of its
    files (the import's own time would order a history of past files by when they were imported)."""
    imported = meta.get("imported")
    dates = imported.get("datetimes") if isinstance(imported, dict) else None
    found = [  # pytest-benchmark 3.x writes UTC without an offset
        d if d.tzinfo else d.replace(tzinfo=UTC)
        for d in map(_time, dates if isinstance(dates, list) else [])
        if d is not None
    ]
    return min(found) if found else _time(meta.get("started"))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def jsonable(obj: Any) -> Any:
    """Plain JSON for a JSON column: NaN/Infinity (which Python writes but PostgreSQL refuses) become null, and
    anything not JSON becomes its str()."""
    return json.loads(json.dumps(obj, default=str), parse_constant=lambda _: None)


def _suite_name(suite: object) -> str:
    name = suite.get("name") if isinstance(suite, dict) else suite
    return str(name or "?")[:200]


def fingerprint_columns(env: dict[str, Any]) -> dict[str, Any]:
    """The fields a driver upgrade is told by, as columns; `fingerprint` hashes every non-volatile field."""
    flat = flatten(env)
    drivers = sorted({str(g.get("driver") or g.get("driver_version")) for g in env.get("gpus") or [] if g})
    drivers = [d for d in drivers if d and d != "None"]
    image = next((flat[k] for pat in IMAGE_KEYS for k in sorted(flat) if fnmatchcase(k, pat) and flat[k]), None)
    stacks = sorted((env.get("stacks") or {}).keys())
    stack = ",".join(stacks)
    if len(stack) > 200:
        stack = "sha256:" + hashlib.sha256(stack.encode()).hexdigest()
    stable = {k: v for k, v in flat.items() if not any(fnmatchcase(k, p) for p in VOLATILE)}
    return {
        "kind": str(env["kind"])[:40] if env.get("kind") else None,
        "hostname": str(env["hostname"])[:255] if env.get("hostname") else None,
        "driver": ",".join(drivers)[:100] or None,
        "kernel": str(env["kernel"])[:200] if env.get("kernel") else None,
        "image": str(image)[:500] if image else None,
        "stack_digest": stack or None,
        "fingerprint": hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest(),
    }


def _canonical_column(column: pd.Series) -> list[str]:
    """`canonical_params` per row, memoised on repr (which tells 1 from True, unlike equality): 100 000 samples
    share a handful of parameter sets, and a JSON dump per row was a third of a publish."""
    cache: dict[str, str] = {}
    out = []
    for p in column:
        key = repr(p)
        if (text := cache.get(key)) is None:
            text = cache[key] = canonical_params(p)
        out.append(text)
    return out


def build(run: RunData, *, raw: bool, now: datetime) -> RunRows:
    meta = run.meta
    samples = run.samples.copy()
    samples["params"] = _canonical_column(samples["params"])
    names = list(dict.fromkeys([*map(str, samples["target"].dropna()), *map(str, meta.get("targets") or {})]))
    instances: dict[InstanceKey, dict[str, Any]] = {}
    for rec in run.cases.to_dict("records") if not run.cases.empty else []:
        key = (
            str(rec.get("target")),
            str(rec.get("workload")),
            canonical_params(rec.get("params")),
            int(rec.get("instance") or 0),
        )
        clean = jsonable({k: v for k, v in rec.items() if not (isinstance(v, float) and math.isnan(v))})
        instances[key] = {
            "case_no": _int(clean.get("case")),
            "status": str(clean.get("status") or "unknown")[:40],
            "reason": clean.get("reason"),
            "record": clean,
        }
        names.append(key[0])
    keys = samples[["target", "workload", "params", "instance"]].drop_duplicates()
    for t, w, p, i in keys.itertuples(index=False):
        instances.setdefault(
            (str(t), str(w), str(p), int(i)),
            {"case_no": None, "status": "unfinished", "reason": "samples without a finished case", "record": {}},
        )
    info = samples.drop_duplicates(["workload", "metric"]).set_index(["workload", "metric"])[["unit", "better"]]
    medians = []
    for r in instance_medians(samples).to_dict("records"):
        unit, better = info.loc[(r["workload"], r["metric"])]
        key = (str(r["target"]), str(r["workload"]), str(r["params"]), int(r["instance"]))
        medians.append((key, {"metric": str(r["metric"]), "unit": str(unit), "better": str(better),
                              "median": float(r["median"]), "n": int(r["n"])}))  # fmt: skip
    targets = [
        {"name": name, **fingerprint_columns(run.env.get(name, {})), "env": jsonable(run.env.get(name, {}))}
        for name in dict.fromkeys(names)
    ]
    kept = samples if raw else samples.iloc[0:0]
    run_row = {
        "run_id": str(meta.get("run_id") or run.dir.name),
        "suite": _suite_name(meta.get("suite")),
        "started": _measured_at(meta),
        "finished": _time(meta.get("finished")),
        "status": str(meta.get("status") or "unknown")[:40],
        "benchbed_version": meta.get("benchbed_version"),
        "controller_host": meta.get("controller_host"),
        "seed": _int(meta.get("seed")),
        "digest": digest(run.dir),
        "raw_samples": raw,
        "n_samples": len(samples),
        "published": now,
        "accepted": False,
        "meta": jsonable(meta),
    }
    return RunRows(run_row, targets, instances, medians, kept)
