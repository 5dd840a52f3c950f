"""Alembic migrations of the results database (run by `benchbed.history.engine`, never by hand in production).

A new revision: `alembic -c /dev/null` is not needed — write `versions/NNNN_what.py` by hand (down_revision = the
previous one), change `schema.py` to match, and bump `engine.HEAD`; tests/unit/test_history_schema.py checks that
the migrated database equals `schema.metadata`.
"""
