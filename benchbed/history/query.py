"""Questions asked of the results database: a metric's trend over runs, and which runs are accepted.

A trend point is one run of one target: the median of its per-instance medians (the report's centre), with the
target's fingerprint columns so environment changes can be put on the timeline.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import select, update

from benchbed.history import schema as t
from benchbed.history.changepoints import Shift, detect
from benchbed.history.dburl import HistoryError
from benchbed.history.engine import Database
from benchbed.rules import rules_of
from benchbed.thresholds import Threshold

ENV_FIELDS = ("driver", "kernel", "image", "stack_digest")
POINT_COLUMNS = ["run_id", "started", "accepted", "value", "n", *ENV_FIELDS]


@dataclass(frozen=True)
class EnvChange:
    index: int  # first run with the new value
    changes: dict[str, tuple[str | None, str | None]]

    def text(self) -> str:
        return ", ".join(f"{k} {_short(a)} → {_short(b)}" for k, (a, b) in self.changes.items())


@dataclass(frozen=True)
class Series:
    target: str
    params: str
    points: pd.DataFrame  # POINT_COLUMNS, oldest first
    env_changes: list[EnvChange] = field(default_factory=list)
    shifts: list[Shift] = field(default_factory=list)

    def coincides(self, shift: Shift) -> EnvChange | None:
        """The environment change at the shift's run, or at the run before or after it (a one-run tolerance)."""
        near = sorted(self.env_changes, key=lambda e: abs(e.index - shift.index))
        return near[0] if near and abs(near[0].index - shift.index) <= 1 else None


@dataclass(frozen=True)
class Trend:
    workload: str
    metric: str
    unit: str
    better: str
    threshold: float
    series: list[Series]
    threshold_source: str = "built-in"  # where the threshold came from (`benchbed.thresholds`): "suite default", …

    @property
    def threshold_label(self) -> str:
        return f"±{self.threshold * 100:g}% ({self.threshold_source})"


def _short(value: str | None) -> str:
    if value is None:
        return "∅"
    return value[:12] if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else value


def target_names(db: Database) -> list[str]:
    with db.transaction() as conn:
        return sorted(str(n) for n in conn.execute(select(t.targets.c.name).distinct()).scalars())


def trend(
    db: Database, target: str, workload: str, metric: str | None = None, *, params: str | None = None,
    last: int | None = None,
) -> Trend:  # fmt: skip
    """The trend of `workload`/`metric` on every target matching `target` — a name, a glob or a comma-separated
    list of them (a group) — one series per target and parameter set; change points and environment changes
    marked."""
    globs = [g.strip() for g in target.split(",") if g.strip()]
    names = [n for n in target_names(db) if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if not names:
        raise HistoryError(f"no published target matches {target!r}", hint=f"targets: {', '.join(target_names(db))}")
    q = (
        select(
            t.runs.c.run_id,
            t.runs.c.started,
            t.runs.c.accepted,
            t.targets.c.name.label("target"),
            *[t.targets.c[f] for f in ENV_FIELDS],
            t.instances.c.params,
            t.medians.c.metric,
            t.medians.c.unit,
            t.medians.c.better,
            t.medians.c.median,
        )
        .join(t.instances, t.instances.c.id == t.medians.c.instance)
        .join(t.targets, t.targets.c.id == t.instances.c.target)
        .join(t.runs, t.runs.c.id == t.instances.c.run)
        .where(t.targets.c.name.in_(names), t.instances.c.workload == workload)
    )
    if metric is not None:
        q = q.where(t.medians.c.metric == metric)
    with db.transaction() as conn:
        df = pd.DataFrame(conn.execute(q).mappings().all())
    if df.empty:
        raise HistoryError(f"no published medians of {workload}{':' + metric if metric else ''} on {target!r}")
    metrics = sorted(df["metric"].unique())
    if len(metrics) > 1:
        raise HistoryError(f"{workload} has several metrics", hint=f"pick one with --metric: {', '.join(metrics)}")
    if params is not None:
        df = df[df["params"] == _canonical(params)]
        if df.empty:
            raise HistoryError(f"no published {workload} with params {params}")
    first = df.iloc[0]
    series = [_series(str(name), str(p), g, last) for (name, p), g in df.groupby(["target", "params"], sort=True)]
    thr = _threshold(db, df, workload, str(first["metric"]))
    series = [
        Series(s.target, s.params, s.points, s.env_changes, detect(s.points["value"], min_rel=thr.value))
        for s in series
    ]
    unit, better = str(first["unit"]), str(first["better"])
    return Trend(workload, str(first["metric"]), unit, better, thr.value, series, thr.source)


def _threshold(db: Database, df: pd.DataFrame, workload: str, metric: str) -> Threshold:
    """The metric's threshold as the newest run of the trend was judged by (its suite's `thresholds:` and the
    built-in classes recorded in its run.json): the same one `compare` and the report use, with its source."""
    newest = str(df.sort_values("started").iloc[-1]["run_id"])
    with db.transaction() as conn:
        meta = conn.execute(select(t.runs.c.meta).where(t.runs.c.run_id == newest)).scalar()
    return rules_of(meta if isinstance(meta, dict) else {}).threshold_rules().pick(workload, metric)


def _canonical(params: str) -> str:
    try:
        return json.dumps(json.loads(params), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        raise HistoryError(f"--params {params!r} is not JSON", hint="e.g. --params '{\"n\": 512}'") from None


def _series(target: str, params: str, rows: pd.DataFrame, last: int | None) -> Series:
    g = rows.groupby("run_id", sort=False)
    points = g.agg(
        started=("started", "first"), accepted=("accepted", "first"), value=("median", "median"), n=("median", "size"),
        **{f: (f, "first") for f in ENV_FIELDS},
    ).reset_index()  # fmt: skip
    points["started"] = pd.to_datetime(points["started"], utc=True)
    points = points.sort_values(["started", "run_id"]).reset_index(drop=True)[POINT_COLUMNS]
    if last is not None:
        points = points.iloc[-last:].reset_index(drop=True)
    changes = []
    for i in range(1, len(points)):
        prev, cur = points.iloc[i - 1], points.iloc[i]
        diff = {f: (_opt(prev[f]), _opt(cur[f])) for f in ENV_FIELDS if _opt(prev[f]) != _opt(cur[f])}
        if diff:
            changes.append(EnvChange(i, diff))
    return Series(target, params, points, changes)


def _opt(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) else str(value)


def set_accepted(db: Database, run_id: str, accepted: bool) -> None:
    with db.transaction() as conn:
        done = conn.execute(
            update(t.runs)
            .where(t.runs.c.run_id == run_id)
            .values(accepted=accepted, accepted_at=datetime.now(UTC) if accepted else None)
        )
        if done.rowcount == 0:
            raise HistoryError(f"run {run_id} is not in {db.shown}", hint="benchbed publish results/<run-id> first")
