"""Which database: `--db URL`, else $BENCHBED_DB, else a SQLite file in the user's data directory.

Accepted: `sqlite:///PATH`, a plain file path (SQLite), `postgresql://…` / `postgres://…` (driven by psycopg 3).
A password is in the URL at most: every message and log line shows the URL with it masked (`masked`), and any
text from a driver is scrubbed of it too (`scrub`) before it is shown.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from benchbed.history.masking import HistoryError, mask_text

__all__ = ["HistoryError", "mask_text"]

ENV = "BENCHBED_DB"
SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def default_path() -> Path:
    """<user data dir>/benchbed/history.sqlite ($XDG_DATA_HOME on Linux, as platformdirs reads it)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("benchbed", appauthor=False)) / "history.sqlite"


def resolve(given: str | None) -> URL:
    """The SQLAlchemy URL for `given` (or $BENCHBED_DB, or the default file); bad ones are a HistoryError."""
    env = os.environ.get(ENV)
    if (given is not None and not given.strip()) or (given is None and env is not None and not env.strip()):
        where = f"${ENV}" if given is None else "the URL given (--db / --publish)"
        raise HistoryError(  # an unset CI secret expands to "": never publish somewhere else without a word
            f"{where} is empty", hint=f"give a database URL, or leave out --db and unset ${ENV} for the default file"
        )
    text = given or env or ""
    if not text:
        path = default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return URL.create("sqlite", database=str(path))
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise HistoryError(f"database URL {mask_text(text)!r} is not a URL", hint=_HINT) from None
    scheme = url.drivername.split("+")[0]
    if scheme not in SCHEMES:
        raise HistoryError(f"database URL {masked(url)}: unsupported scheme {scheme!r}", hint=_HINT)
    if scheme == "sqlite" and not url.database:
        raise HistoryError("database URL sqlite:// names no file (an in-memory database keeps nothing)", hint=_HINT)
    return url.set(drivername=SCHEMES[scheme])


_HINT = "give postgresql://USER:PASSWORD@HOST:PORT/DB or sqlite:///PATH (or a file path)"


def masked(url: URL) -> str:
    """The URL as it may be shown: password replaced by ***."""
    return url.render_as_string(hide_password=True)


def scrub(text: str, url: URL | None) -> str:
    """A driver's message with the URL's password (and its URL-quoted form) removed."""
    if url is None or not url.password:
        return text
    from urllib.parse import quote

    secret = str(url.password)
    for form in {secret, quote(secret, safe="")}:
        if form:
            text = text.replace(form, "***")
    return text
