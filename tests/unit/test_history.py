"""Results database, the pure parts: URL masking and resolution, change points, and migrations == schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchbed.history.changepoints import detect
from benchbed.history.dburl import HistoryError, masked, resolve, scrub
from benchbed.history.masking import mask_argv, mask_text


def test_password_never_shown() -> None:
    url = resolve("postgresql://ci:p%40ss w0rd@db.example:5432/bench")
    assert "p@ss w0rd" not in masked(url)
    assert masked(url) == "postgresql+psycopg://ci:***@db.example:5432/bench"
    assert scrub("FATAL for p@ss w0rd and p%40ss%20w0rd", url) == "FATAL for *** and ***"
    assert mask_text("postgres://u:hunter2@h/db") == "postgres://u:***@h/db"
    assert mask_text("sqlite:///a/b@c") == "sqlite:///a/b@c"
    assert mask_argv(["run", "--publish", "postgresql://u:pw@h/d", "--publish=postgresql://u:pw@h/d"]) == [
        "run", "--publish", "postgresql://u:***@h/d", "--publish=postgresql://u:***@h/d",
    ]  # fmt: skip


def test_default_database_is_a_file_in_the_user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCHBED_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert resolve(None).database == str(tmp_path / "benchbed" / "history.sqlite")
    monkeypatch.setenv("BENCHBED_DB", str(tmp_path / "x.db"))
    assert resolve(None).database == str(tmp_path / "x.db")
    assert resolve("postgres://u@h/d").drivername == "postgresql+psycopg"


def test_an_empty_url_is_refused_not_taken_for_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset CI secret expands to "": publishing to a SQLite file on the runner instead would lose the run."""
    monkeypatch.delenv("BENCHBED_DB", raising=False)
    with pytest.raises(HistoryError, match=r"the URL given \(--db / --publish\) is empty"):
        resolve("")
    monkeypatch.setenv("BENCHBED_DB", " ")
    with pytest.raises(HistoryError, match=r"\$BENCHBED_DB is empty"):
        resolve(None)


@pytest.mark.parametrize("bad", ["mysql://u@h/d", "sqlite://", "postgresql://u@h:port/d"])
def test_bad_urls_are_history_errors(bad: str) -> None:
    with pytest.raises(HistoryError):
        resolve(bad)


@pytest.mark.parametrize("seed", range(10))
def test_a_planted_step_is_found_at_its_run(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = 100 * (1 + 0.005 * rng.standard_normal(20))
    x[13:] *= 0.95
    (shift,) = detect(x, min_rel=0.01)
    assert shift.index == 13
    assert -6 < shift.change_pct < -4


@pytest.mark.parametrize("seed", range(10))
def test_noise_alone_has_no_change_point(seed: int) -> None:
    x = 100 * (1 + 0.005 * np.random.default_rng(seed).standard_normal(20))
    assert detect(x, min_rel=0.01) == []


def test_a_step_below_the_threshold_is_not_reported() -> None:
    x = np.r_[np.full(10, 100.0), np.full(10, 100.5)] + np.tile([0.01, -0.01], 10)
    assert detect(x, min_rel=0.01) == []
    assert [s.index for s in detect(x, min_rel=0.001)] == [10]


def test_too_short_series_is_not_tested() -> None:
    assert detect([1.0, 2.0, 3.0], min_rel=0.01) == []


def test_migrations_create_exactly_the_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from benchbed.history.engine import HEAD, open_db
    from benchbed.history.schema import metadata

    db = open_db(f"sqlite:///{tmp_path}/h.sqlite")
    try:
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            assert ctx.get_current_revision() == HEAD
            assert compare_metadata(ctx, metadata) == []
    finally:
        db.close()


def test_the_cli_does_not_import_the_database_layer() -> None:
    """`benchbed run` without --publish (and any other command) must not pay for SQLAlchemy, Alembic, psycopg."""
    import subprocess
    import sys

    heavy = ("sqlalchemy", "alembic", "psycopg", "ruptures", "platformdirs")
    code = f"import sys, benchbed.cli\nprint(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_fingerprint_columns_name_what_an_upgrade_changes() -> None:
    from benchbed.history.rows import fingerprint_columns

    env = {
        "kind": "docker",
        "hostname": "node-7",
        "kernel": "6.1.0-21-amd64",
        "gpus": [{"driver_version": "560.35", "name": "H100"}, {"driver_version": "560.35", "name": "H100"}],
        "docker": {"image": "benchbed/test-python:abc", "image_id": "sha256:feed"},
        "stacks": {"d1" * 32: {"digest": "d1" * 32}},
        "memory": {"MemAvailable": 1},
    }
    cols = fingerprint_columns(env)
    assert cols["driver"] == "560.35"
    assert cols["image"] == "sha256:feed"
    assert cols["stack_digest"] == "d1" * 32
    assert (cols["kind"], cols["hostname"], cols["kernel"]) == ("docker", "node-7", "6.1.0-21-amd64")
    volatile_only = fingerprint_columns({**env, "memory": {"MemAvailable": 2}, "hostname": "node-8"})
    assert volatile_only["fingerprint"] == cols["fingerprint"]  # volatile fields do not change the fingerprint
    upgraded = fingerprint_columns({**env, "gpus": [{"driver_version": "570.10"}]})
    assert upgraded["fingerprint"] != cols["fingerprint"]
    assert fingerprint_columns({})["driver"] is None


def test_an_imported_run_is_placed_in_history_when_its_files_measured() -> None:
    from datetime import UTC, datetime

    from benchbed.history.rows import _measured_at

    started = "2026-11-30T11:44:01+00:00"
    files = ["2026-03-02T10:00:00+00:00", "2026-03-01T09:00:00", "garbage"]  # 3.x: no offset, meaning UTC
    assert _measured_at({"started": started, "imported": {"datetimes": files}}) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert _measured_at({"started": started}) == datetime(2026, 11, 30, 11, 44, 1, tzinfo=UTC)
    assert _measured_at({"started": started, "imported": {"datetimes": []}}) == datetime(
        2026, 11, 30, 11, 44, 1, tzinfo=UTC
    )
