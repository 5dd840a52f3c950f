"""Alembic environment: always online, on the connection `engine.migrate` hands over (already in a transaction that
holds the migration lock), so one process migrates and the others wait and then find nothing to do."""

from __future__ import annotations

from alembic import context

from benchbed.history.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
