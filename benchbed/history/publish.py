"""`benchbed publish`: one run directory ▸ one transaction. Idempotent, safe when several hosts publish at once.

The run directory is only read. The whole run — run, targets, instances, medians, samples — is written in one
transaction, so a crash, a kill or a lost connection leaves nothing of it behind. A run already in the database
(same run_id) adds nothing; if two processes race on the same run, the unique run_id lets exactly one commit and
the other reports "already published". The same run_id with other files is refused (one line, exit 2).
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from benchbed.history import schema as t
from benchbed.history.dburl import HistoryError
from benchbed.history.engine import Database
from benchbed.history.rows import InstanceKey, RunRows, build, jsonable
from benchbed.results import load_run

CRASH_ENV = "BENCHBED_HISTORY_TEST_CRASH"  # tests only: SIGKILL this process just before the publish commits


@dataclass(frozen=True)
class Published:
    run_id: str
    added: bool
    instances: int = 0
    samples: int = 0
    replaced: bool = False  # an incomplete version published before the run was resumed and finished

    def line(self, db: Database) -> str:
        if not self.added:
            return f"{self.run_id}: already in {db.shown} (nothing added)"
        again = "; replaces its incomplete version" if self.replaced else ""
        return f"{self.run_id}: published to {db.shown} ({self.instances} instances, {self.samples} raw samples{again})"


def publish(db: Database, run_dir: Path, *, raw: bool = True) -> Published:
    run = load_run(run_dir)
    if run.meta.get("status") == "running":
        raise HistoryError(f"{run_dir}: the run is still running", hint="publish it when it has finished")
    rows = build(run, raw=raw, now=datetime.now(UTC))
    run_id = rows.run["run_id"]
    if (known := _known(db, run_id)) is not None and not _continues(known, rows):
        return _again(run_dir, run_id, known, rows)
    replaced = False
    try:
        with db.transaction() as conn:
            if (known := _stored(conn, run_id)) is not None:
                if not _continues(known, rows):
                    return _again(run_dir, run_id, known, rows)
                _replace(conn, run_id, rows)  # the resumed run supersedes what was published of it, atomically
                replaced = True
            n = _write(conn, rows)
            if os.environ.get(CRASH_ENV) == "before-commit":
                os.kill(os.getpid(), signal.SIGKILL)
    except HistoryError as err:
        if isinstance(err.__context__, IntegrityError) and (known := _known(db, run_id)) is not None:
            return _again(run_dir, run_id, known, rows)  # a concurrent publish of the same run won the race
        raise
    return Published(run_id, True, len(rows.instances), n, replaced)


@dataclass(frozen=True)
class Stored:
    digest: str
    status: str
    accepted: bool
    accepted_at: datetime | None


def _known(db: Database, run_id: str) -> Stored | None:
    with db.transaction() as conn:
        return _stored(conn, run_id)


def _stored(conn: Connection, run_id: str) -> Stored | None:
    r = t.runs.c
    found = conn.execute(select(r.digest, r.status, r.accepted, r.accepted_at).where(r.run_id == run_id)).first()
    return None if found is None else Stored(str(found[0]), str(found[1]), bool(found[2]), found[3])


def _continues(known: Stored, rows: RunRows) -> bool:
    """An unfinished run published before `benchbed run --resume` took it further: the later version replaces it
    (its files grew; a run id still names one run). A complete run with other files is refused by `_again`."""
    return known.status != "complete" and known.digest != rows.run["digest"]


def _replace(conn: Connection, run_id: str, rows: RunRows) -> None:
    """Drop the stored, unfinished version of the run (targets, instances, medians and samples cascade) and keep
    its `accepted` mark for the finished one."""
    old = conn.execute(select(t.runs.c.accepted, t.runs.c.accepted_at).where(t.runs.c.run_id == run_id)).one()
    conn.execute(delete(t.runs).where(t.runs.c.run_id == run_id))
    rows.run.update(accepted=bool(old[0]), accepted_at=old[1])


def _again(run_dir: Path, run_id: str, known: Stored, rows: RunRows) -> Published:
    if known.digest != rows.run["digest"]:
        raise HistoryError(
            f"{run_dir}: run {run_id} is already published from other files (samples or cases differ); not replaced",
            hint="a run id names one run: was this directory copied and changed?",
        )
    return Published(run_id, False)


def _write(conn: Connection, rows: RunRows) -> int:
    run_pk = conn.execute(insert(t.runs).returning(t.runs.c.id), rows.run).scalar_one()
    target_pk = {}
    for target in rows.targets:
        target_pk[target["name"]] = conn.execute(
            insert(t.targets).returning(t.targets.c.id), {"run": run_pk, **target}
        ).scalar_one()
    keys = list(rows.instances)
    inst_pk: dict[InstanceKey, int] = {}
    if keys:
        params = [{"run": run_pk, "target": target_pk[k[0]], "workload": k[1], "params": k[2], "instance": k[3],
                   **rows.instances[k]} for k in keys]  # fmt: skip
        result = conn.execute(insert(t.instances).returning(t.instances.c.id, sort_by_parameter_order=True), params)
        inst_pk = dict(zip(keys, result.scalars().all(), strict=True))
    if rows.medians:
        conn.execute(insert(t.medians), [{"instance": inst_pk[k], **m} for k, m in rows.medians])
    return _write_samples(conn, rows.samples, inst_pk)


SAMPLE_COLUMNS = ("instance", "metric", "phase", "repetition", "value", "valid", "reason", "labels")


def _write_samples(conn: Connection, samples: pd.DataFrame, inst_pk: dict[InstanceKey, int]) -> int:
    """Raw samples through the driver's own bulk path, in the same transaction: COPY on PostgreSQL, executemany
    on SQLite. Row-by-row through SQLAlchemy's type processing cost ~3 s per 100 000 samples; this ~0.3 s."""
    if samples.empty:
        return 0
    keys = ["target", "workload", "params", "instance"]
    # ngroup(sort=False) numbers the keys in order of first appearance, as drop_duplicates lists them
    first = samples[keys].drop_duplicates().itertuples(index=False)
    pk_of_group = np.asarray([inst_pk[(str(a), str(b), str(c), int(d))] for a, b, c, d in first], dtype=np.int64)
    ids = pk_of_group[samples.groupby(keys, sort=False).ngroup().to_numpy()].tolist()
    values = pd.to_numeric(samples["value"], errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
    reps = pd.to_numeric(samples["repetition"], errors="coerce").fillna(0).astype(int).tolist()
    rows = list(
        zip(
            ids,
            samples["metric"].astype(str).tolist(),
            samples["phase"].fillna("measure").astype(str).tolist(),
            reps,
            [None if v != v else v for v in values.tolist()],
            [v is True or v is np.True_ for v in samples["valid"]],
            [r if isinstance(r, str) else None for r in samples["reason"]],
            [json.dumps(jsonable(v)) if isinstance(v, dict) and v else None for v in samples["labels"]],
            strict=True,
        )
    )
    raw: Any = conn.connection.driver_connection
    names = ", ".join(SAMPLE_COLUMNS)
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY samples ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        raw.executemany(f"INSERT INTO samples ({names}) VALUES ({', '.join('?' * len(SAMPLE_COLUMNS))})", rows)
    return len(rows)
