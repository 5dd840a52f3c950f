"""Connect to the results database and bring its schema to HEAD; every driver fault becomes one HistoryError line.

Concurrency: several hosts publish at once. PostgreSQL: each publish is one transaction under READ COMMITTED, and
the unique `run_id` makes a racing duplicate fail cleanly (`publish` reports it as already there); migrations run
under a transaction-scoped advisory lock, so the first process migrates and the rest wait, then find HEAD.
SQLite: every transaction is BEGIN IMMEDIATE (one writer at a time, the others wait up to `SQLITE_BUSY_S`) in
WAL mode, so readers never see a half-written run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from benchbed.history.dburl import HistoryError, masked, resolve, scrub

HEAD = "0001"
KNOWN = {None, "0001"}
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x62656E6368  # "bench": pg_advisory_xact_lock key shared by every benchbed
SQLITE_BUSY_S = 60.0
PG_CONNECT_TIMEOUT_S = 10


class Database:
    """One results database: its URL (never shown with the password) and a SQLAlchemy engine."""

    def __init__(self, url: URL, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.is_postgres = url.get_backend_name() == "postgresql"

    @property
    def shown(self) -> str:
        return masked(self.url)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; a driver fault inside it is a HistoryError (the transaction is rolled back)."""
        with faults(self.url), self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def faults(url: URL) -> Iterator[None]:
    """Driver and SQL errors ▸ HistoryError naming the database (password masked) and the driver's first line."""
    try:
        yield
    except SQLAlchemyError as err:
        raise HistoryError(f"results database {masked(url)}: {_reason(err, url)}", hint=_hint(url)) from None
    except sqlite3.Error as err:
        raise HistoryError(f"results database {masked(url)}: {scrub(str(err), url)}", hint=_hint(url)) from None


def _reason(err: SQLAlchemyError, url: URL) -> str:
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return scrub("; ".join(lines[:2]) if lines else type(err).__name__, url)


def _hint(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return "is the path a writable SQLite file? (--db / $BENCHBED_DB)"
    return "is the server up, and are host, port, user, password and database right? (--db / $BENCHBED_DB)"


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite's own BEGIN handling off: `_on_begin` says BEGIN IMMEDIATE
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_db(given: str | None, *, migrate: bool = True) -> Database:
    """Resolve, connect, migrate to HEAD. Raises HistoryError (one line) on anything wrong."""
    url = resolve(given)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        if not path.parent.is_dir():
            raise HistoryError(f"results database {masked(url)}: directory {path.parent} does not exist")
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(url, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    db = Database(url, engine)
    if migrate:
        try:
            upgrade(db)
        except BaseException:
            db.close()
            raise
    return db


def upgrade(db: Database) -> None:
    """Bring the schema to HEAD under the migration lock; refuse a database of a newer benchbed."""
    with db.transaction() as conn:
        if db.is_postgres:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        current = _revision(conn)
        if current == HEAD:
            return  # the usual case: Alembic (0.3 s of imports) is not even loaded
        if current not in KNOWN:
            raise HistoryError(
                f"results database {db.shown}: schema revision {current!r} is newer than this benchbed's ({HEAD})",
                hint="upgrade benchbed",
            )
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _revision(conn: Connection) -> str | None:
    """The schema revision Alembic recorded (its one-row `alembic_version` table), or None for an empty database."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    versions = [str(v) for v in conn.execute(text("SELECT version_num FROM alembic_version")).scalars()]
    return versions[0] if len(versions) == 1 else ",".join(sorted(versions)) or None
