"""What may be shown of a database URL, and the one error of the results database. Stdlib only: cli.py imports
it for every `benchbed run --publish` without loading SQLAlchemy."""

from __future__ import annotations

from benchbed.errors import BenchbedError


class HistoryError(BenchbedError):
    """The results database is unreachable, refused us, or holds something this benchbed cannot read."""


def mask_text(text: str) -> str:
    """A URL-like string with any `user:password@` part masked, for text that did not parse as a URL."""
    head, sep, rest = text.partition("://")
    if not sep or "@" not in rest:
        return text
    cred, at, host = rest.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{head}://{user}:***{at}{host}" if ":" in cred else text


def mask_argv(argv: list[str]) -> list[str]:
    """Command-line words with any database URL's password masked (run.json records the argv)."""
    return [mask_text(word) if "://" in word else word for word in argv]
