"""No package-index or mirror host in what installs things: those come from the machine's apt sources and pip's own
configuration (scripts/debian-mirror, pip.conf), so a mirror, a proxy or an air-gapped index works unchanged."""

from __future__ import annotations

import re

from tests.conftest import REPO

URL = re.compile(r"\b(?:https?|ftp)://[^\s'\"]+")


def test_installers_name_no_host() -> None:
    files = [REPO / "Makefile", *(REPO / "scripts").iterdir(), *(REPO / ".ci").iterdir()]
    files += [p for p in (REPO / "targets").rglob("*") if p.is_file()]
    lines = [(p, line) for p in files for line in p.read_text(errors="replace").splitlines()]
    found = [f"{p.relative_to(REPO)}: {url}" for p, line in lines if "xmlns" not in line for url in URL.findall(line)]
    assert found == []  # an XML namespace (xmlns) is a name, never fetched
