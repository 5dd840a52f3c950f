"""The tables (SQLAlchemy Core). The migrations in `migrations/versions` create exactly these; a test checks it.

runs       one row per published run: run_id (unique: publishing is idempotent), suite, times, status, the whole
           run.json (`meta`), whether raw samples were kept, a digest of the published files, and `accepted`
           (a known-good run for `compare --against last-good`).
targets    one row per (run, target): the fingerprint as gathered (`env`) and the fields a driver upgrade is
           told by — driver, kernel, image, stack digest — as columns, so SQL tools can group on them.
instances  one row per case of cases.jsonl (target, workload, params, instance, status), `record` the line.
medians    per instance and metric: the median of its measured samples and n. Always kept: every verdict and
           every trend is computed from these.
samples    raw samples (optional: `publish --no-raw`), one row each; value NULL when not finite.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
# SQLite needs INTEGER for an autoincrementing key; PostgreSQL gets BIGINT identity.
Key = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "runs",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("run_id", String(200), nullable=False, unique=True),
    Column("suite", String(200), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("status", String(40), nullable=False),
    Column("benchbed_version", String(40), nullable=True),
    Column("controller_host", String(255), nullable=True),
    Column("seed", BigInteger, nullable=True),
    Column("digest", String(64), nullable=False),
    Column("raw_samples", Boolean, nullable=False),
    Column("n_samples", Integer, nullable=False),
    Column("published", DateTime(timezone=True), nullable=False),
    Column("accepted", Boolean, nullable=False, default=False),
    Column("accepted_at", DateTime(timezone=True), nullable=True),
    Column("meta", JSON, nullable=False),
)
Index("ix_runs_started", runs.c.started)

targets = Table(
    "targets",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("run", Key, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(40), nullable=True),
    Column("hostname", String(255), nullable=True),
    Column("driver", String(100), nullable=True),
    Column("kernel", String(200), nullable=True),
    Column("image", String(500), nullable=True),
    Column("stack_digest", String(200), nullable=True),
    Column("fingerprint", String(64), nullable=True),
    Column("env", JSON, nullable=False),
    UniqueConstraint("run", "name", name="uq_targets_run_name"),
)
Index("ix_targets_name", targets.c.name)

instances = Table(
    "instances",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("run", Key, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("target", Key, ForeignKey("targets.id", ondelete="CASCADE"), nullable=False),
    Column("workload", String(200), nullable=False),
    Column("params", Text, nullable=False),
    Column("instance", Integer, nullable=False),
    Column("case_no", Integer, nullable=True),
    Column("status", String(40), nullable=False),
    Column("reason", Text, nullable=True),
    Column("record", JSON, nullable=False),
)
Index("ix_instances_run", instances.c.run)
Index("ix_instances_target_workload", instances.c.target, instances.c.workload)

medians = Table(
    "medians",
    metadata,
    Column("instance", Key, ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    Column("metric", String(200), primary_key=True),
    Column("unit", String(40), nullable=False),
    Column("better", String(10), nullable=False),
    Column("median", Float, nullable=False),
    Column("n", Integer, nullable=False),
)

samples = Table(
    "samples",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("instance", Key, ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    Column("metric", String(200), nullable=False),
    Column("phase", String(20), nullable=False),
    Column("repetition", Integer, nullable=False),
    Column("value", Float, nullable=True),
    Column("valid", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Column("labels", JSON, nullable=True),
)
Index("ix_samples_instance", samples.c.instance)
