"""A results database that is unreachable, wrong or not a database: one line on stderr, exit 2, the run directory
untouched, and the password in the URL nowhere in the output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.history_db import PG_URL, cli, files_of, make_run, postgres_database

SECRET = "s3cret-Pa55"
HOSTPORT = PG_URL.split("@")[-1].split("/")[0]


def _bad_urls(tmp: Path) -> dict[str, str]:
    (tmp / "notadb.sqlite").write_text("this is not a database\n" * 100)
    return {
        "scheme": f"mysql://root:{SECRET}@127.0.0.1/x",
        "unreachable": f"postgresql://benchbed:{SECRET}@127.0.0.1:1/benchbed_test",
        "sqlite-no-dir": f"sqlite:///{tmp}/missing/dir/h.sqlite",
        "sqlite-not-a-db": f"sqlite:///{tmp}/notadb.sqlite",
        "not-a-url": f"postgresql://benchbed:{SECRET}@127.0.0.1:notaport/x",
    }


@pytest.mark.parametrize("case", ["scheme", "unreachable", "sqlite-no-dir", "sqlite-not-a-db", "not-a-url"])
def test_bad_database_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    run = make_run(tmp_path / "res", "r1", day=0, level=100.0)
    before = files_of(run)
    url = _bad_urls(tmp_path)[case]
    for args in (["publish", str(run)], ["history", "-t", "x", "-w", "y"], ["accept", "r1"]):
        res = cli(*args, "--db", url)
        assert res.returncode == 2, (case, args, res.stdout, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("benchbed: error: ")
        assert "Traceback" not in res.stderr
        assert SECRET not in res.stdout + res.stderr
    assert files_of(run) == before


@pytest.mark.postgres
@pytest.mark.parametrize("case", ["wrong-password", "no-such-database"])
def test_postgres_refuses_and_the_password_is_masked(case: str, tmp_path: Path) -> None:
    for _ in postgres_database():  # skips (or fails under BENCHBED_REQUIRE=postgres) when the server is absent
        break
    url = {
        "wrong-password": f"postgresql://benchbed:{SECRET}@{HOSTPORT}/benchbed_test",
        "no-such-database": f"postgresql://benchbed:benchbed@{HOSTPORT}/no_such_db_{SECRET}",
    }[case]
    run = make_run(tmp_path / "res", "r1", day=0, level=100.0)
    before = files_of(run)
    res = cli("publish", str(run), "--db", url)
    assert res.returncode == 2, res.stdout + res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr
    if case == "wrong-password":
        assert SECRET not in res.stdout + res.stderr
        assert "benchbed:***@" in res.stderr
        assert "password authentication failed" in res.stderr
    else:
        assert "does not exist" in res.stderr
    assert files_of(run) == before


@pytest.mark.local
def test_run_publish_to_an_unreachable_database_fails_before_running(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: pub\nbaseline: local\nworkloads:\n  - name: util.noop\n")
    (tmp_path / "t.yaml").write_text("targets:\n  local: {kind: local}\n")
    url = f"postgresql://benchbed:{SECRET}@127.0.0.1:1/x"
    args = ["run", str(tmp_path / "s.yaml"), "-t", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "res")]
    res = cli(*args, "--no-report", "--publish", url)
    assert res.returncode == 2
    assert SECRET not in res.stdout + res.stderr
    assert not (tmp_path / "res").exists()
    empty = cli(*args, "--no-report", "--publish", "")  # `--publish "$DB_URL"` with the secret unset
    assert empty.returncode == 2, empty.stdout
    assert "is empty" in empty.stderr
    assert not (tmp_path / "res").exists()
