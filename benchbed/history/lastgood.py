"""`benchbed compare RUN --against last-good`: the most recent accepted run of the same targets and workloads.

"Same" means the same set of target names and the same set of workloads with samples, and, among accepted runs
that match, the latest by start time (never RUN itself). That run is rebuilt from the database into a temporary
run directory — run.json, env/, cases.jsonl, and one measured sample per instance and metric holding the stored
per-instance median — and handed to the ordinary `compare`. Every verdict is computed from instance medians, so
the judgement is the one the original directory would give; the directory is removed afterwards.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from benchbed.fileio import write_json
from benchbed.history import schema as t
from benchbed.history.dburl import HistoryError
from benchbed.history.engine import Database
from benchbed.results import load_run

AGAINST = ("last-good",)


def _shape(conn: Connection, run_pk: int) -> tuple[frozenset[str], frozenset[str]]:
    q = (
        select(t.targets.c.name, t.instances.c.workload)
        .join(t.targets, t.targets.c.id == t.instances.c.target)
        .join(t.medians, t.medians.c.instance == t.instances.c.id)
        .where(t.instances.c.run == run_pk)
        .distinct()
    )
    pairs = conn.execute(q).all()
    return frozenset(str(p[0]) for p in pairs), frozenset(str(p[1]) for p in pairs)


def find(db: Database, run_id: str, targets: frozenset[str], workloads: frozenset[str]) -> tuple[int, str] | None:
    """(primary key, run_id) of the latest accepted run with these targets and workloads, other than run_id."""
    with db.transaction() as conn:
        q = (
            select(t.runs.c.id, t.runs.c.run_id)
            .where(t.runs.c.accepted.is_(True), t.runs.c.run_id != run_id)
            .order_by(t.runs.c.started.desc(), t.runs.c.id.desc())
        )
        for pk, rid in conn.execute(q).all():
            if _shape(conn, int(pk)) == (targets, workloads):
                return int(pk), str(rid)
    return None


def materialize(db: Database, run_pk: int, dest: Path) -> Path:
    """Write the stored run as a run directory under dest/<run_id>; returns that directory."""
    with db.transaction() as conn:
        run = conn.execute(select(t.runs).where(t.runs.c.id == run_pk)).mappings().one()
        targets = conn.execute(select(t.targets).where(t.targets.c.run == run_pk)).mappings().all()
        names = {int(r["id"]): str(r["name"]) for r in targets}
        insts = conn.execute(select(t.instances).where(t.instances.c.run == run_pk)).mappings().all()
        joined = t.medians.join(t.instances, t.instances.c.id == t.medians.c.instance)
        meds = conn.execute(select(t.medians).select_from(joined).where(t.instances.c.run == run_pk)).mappings().all()
    out = dest / str(run["run_id"])
    (out / "env").mkdir(parents=True)
    meta: dict[str, Any] = dict(run["meta"])
    write_json(out / "run.json", meta)
    for r in targets:
        write_json(out / "env" / f"{r['name']}.json", r["env"])
    by_id = {int(i["id"]): i for i in insts}
    with (out / "cases.jsonl").open("w", encoding="utf-8") as f:
        for i in insts:
            if i["record"]:
                f.write(json.dumps(i["record"]) + "\n")
    with (out / "samples.jsonl").open("w", encoding="utf-8") as f:
        for m in meds:
            i = by_id[int(m["instance"])]
            row = {"target": names[int(i["target"])], "workload": i["workload"], "params": json.loads(i["params"]),
                   "instance": i["instance"], "case": i["case_no"], "metric": m["metric"], "value": m["median"],
                   "unit": m["unit"], "better": m["better"], "phase": "measure", "repetition": 0, "valid": True,
                   "reason": None, "labels": {}}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    return out


@contextmanager
def last_good(db: Database, run_dir: Path) -> Iterator[Path]:
    """The last good run for run_dir, as a temporary run directory (removed on exit)."""
    run = load_run(run_dir)
    measured = run.samples.dropna(subset=["target"])
    targets = frozenset(str(x) for x in measured["target"].unique())
    workloads = frozenset(str(x) for x in measured["workload"].unique())
    run_id = str(run.meta.get("run_id") or run_dir.name)
    found = find(db, run_id, targets, workloads)
    if found is None:
        raise HistoryError(
            f"no accepted run in {db.shown} with targets {sorted(targets)} and workloads {sorted(workloads)}",
            hint="mark a known-good run with `benchbed accept RUN`",
        )
    with tempfile.TemporaryDirectory(prefix="benchbed-lastgood-") as tmp:
        yield materialize(db, found[0], Path(tmp))
