"""Initial schema: runs, targets, instances, medians, samples (see benchbed/history/schema.py).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", KEY, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("benchbed_version", sa.String(40), nullable=True),
        sa.Column("controller_host", sa.String(255), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("raw_samples", sa.Boolean(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("published", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("run_id", name="uq_runs_run_id"),
    )
    op.create_index("ix_runs_started", "runs", ["started"])
    op.create_table(
        "targets",
        sa.Column("id", KEY, primary_key=True, autoincrement=True),
        sa.Column("run", KEY, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=True),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("driver", sa.String(100), nullable=True),
        sa.Column("kernel", sa.String(200), nullable=True),
        sa.Column("image", sa.String(500), nullable=True),
        sa.Column("stack_digest", sa.String(200), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_targets"),
        sa.ForeignKeyConstraint(["run"], ["runs.id"], name="fk_targets_run_runs", ondelete="CASCADE"),
        sa.UniqueConstraint("run", "name", name="uq_targets_run_name"),
    )
    op.create_index("ix_targets_name", "targets", ["name"])
    op.create_table(
        "instances",
        sa.Column("id", KEY, primary_key=True, autoincrement=True),
        sa.Column("run", KEY, nullable=False),
        sa.Column("target", KEY, nullable=False),
        sa.Column("workload", sa.String(200), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("case_no", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.ForeignKeyConstraint(["run"], ["runs.id"], name="fk_instances_run_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target"], ["targets.id"], name="fk_instances_target_targets", ondelete="CASCADE"),
    )
    op.create_index("ix_instances_run", "instances", ["run"])
    op.create_index("ix_instances_target_workload", "instances", ["target", "workload"])
    op.create_table(
        "medians",
        sa.Column("instance", KEY, nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(40), nullable=False),
        sa.Column("better", sa.String(10), nullable=False),
        sa.Column("median", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("instance", "metric", name="pk_medians"),
        sa.ForeignKeyConstraint(
            ["instance"], ["instances.id"], name="fk_medians_instance_instances", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "samples",
        sa.Column("id", KEY, primary_key=True, autoincrement=True),
        sa.Column("instance", KEY, nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("repetition", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_samples"),
        sa.ForeignKeyConstraint(
            ["instance"], ["instances.id"], name="fk_samples_instance_instances", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_samples_instance", "samples", ["instance"])


def downgrade() -> None:
    for table in ("samples", "medians", "instances", "targets", "runs"):
        op.drop_table(table)
