"""Alembic migrations of the results database, run by `benchbed.history.engine.upgrade` on every connect.

A new revision: copy `script.py.mako` to `versions/NNNN_what.py` and fill it in by hand (down_revision = the
previous one), change `schema.py` to match, and set `engine.HEAD` and add the new id to `engine.KNOWN`;
tests/unit/test_history.py checks that the migrated database equals `schema.metadata`.
"""
