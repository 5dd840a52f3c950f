"""The HTML report in a real headless Chromium (Debian's `chromium`, driven by Playwright).

What a reader does with the page, checked where it happens: it loads offline with no console errors and no
network request, every chart renders, hostile text from the run stays text, the CSV link hands over exactly the
run's samples, and the page prints. Screenshots and the PDF go to $BENCHBED_ARTIFACTS (CI keeps them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import REPO, need

CHROMIUM = os.environ.get("BENCHBED_CHROMIUM", "/usr/bin/chromium")
# As root in a container: no sandbox; and no background traffic to Google's hosts (this machine has no network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "<script>window.__pwned=1</script>"

EVIL_MODULE = f'''
"""Workloads whose parameters and reasons carry markup: the report must show them as text."""
from __future__ import annotations

import time
from dataclasses import dataclass

from benchbed.workloads import Sample, Skipped, workload


@dataclass(frozen=True)
class Label:
    label: str = ""


@workload("evil.ok", params=Label)
def ok(p, ctx):
    """A tiny timed loop whose parameter is hostile markup."""
    for phase, rep in ctx.schedule():
        t0 = time.perf_counter_ns()
        sum(range(20_000))
        yield Sample("loop_ms", (time.perf_counter_ns() - t0) / 1e6, "ms", "lower", phase, rep)


@workload("evil.skip")
def skip(p, ctx):
    """Always skips, with markup in the reason."""
    raise Skipped({XSS!r})
    yield


@workload("evil.fail")
def fail(p, ctx):
    """Always fails, with markup in the error."""
    raise RuntimeError({SCRIPT!r})
    yield
'''


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchbed.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def artifacts_dir(tmp_path: Path) -> Path:
    root = os.environ.get("BENCHBED_ARTIFACTS")
    out = Path(root) / "report-browser" if root else tmp_path / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-target local run (CPU, startup, hostile custom workloads), then a target renamed to markup in the
    run directory itself: a report must survive whatever a run directory says."""
    tmp = tmp_path_factory.mktemp("browser-run")
    (tmp / "evil.py").write_text(EVIL_MODULE, encoding="utf-8")
    (tmp / "suite.yaml").write_text(
        f"""name: browser-check
description: {json.dumps("Suite description with " + SCRIPT)}
baseline: local
defaults: {{instances: 2, repetitions: 4, warmup: 1, timeout_s: 120}}
modules: [evil.py]
workloads:
  - {{name: evil.ok, params: {{label: {json.dumps(XSS)}}}}}
  - {{name: evil.skip}}
  - {{name: evil.fail}}
  - {{name: cpu.gemm, params: {{n: 128}}}}
  - {{name: startup.process}}
""",
        encoding="utf-8",
    )
    (tmp / "targets.yaml").write_text("targets:\n  local: {kind: local}\n  twin: {kind: local}\n", encoding="utf-8")
    res = cli("run", str(tmp / "suite.yaml"), "-t", str(tmp / "targets.yaml"), "--out", str(tmp / "results"),
              "--no-report", "--seed", "7")  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr  # evil.fail fails its instances: the run says so
    (run_dir,) = (tmp / "results").iterdir()
    for name in ("samples.jsonl", "cases.jsonl", "run.json"):
        path = run_dir / name
        path.write_text(path.read_text(encoding="utf-8").replace('"twin"', json.dumps(SCRIPT)), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        need("browser", f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("browser", "playwright is not installed (pip install playwright)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.local
@pytest.mark.browser
def test_report_in_chromium(hostile_run: Path, browser: Any, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    res = cli("report", str(hostile_run), "-o", str(report))
    assert res.returncode == 0, res.stderr
    art = artifacts_dir(tmp_path)

    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    console: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(report.as_uri(), wait_until="load")

    # every chart drew an SVG with data in it
    charts = page.locator("div.chart")
    assert charts.count() >= 2, "expected distribution and startup-phase charts"
    page.wait_for_function(
        "() => [...document.querySelectorAll('div.chart')].every(d => d.querySelector('svg.main-svg'))", timeout=30_000
    )
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('div.chart')].map(d => d.querySelectorAll('g.trace').length)"
    )
    assert all(n > 0 for n in drawn), f"a chart rendered without traces: {drawn}"
    page.screenshot(path=str(art / "report.png"), full_page=True)
    charts.first.screenshot(path=str(art / "chart-first.png"))
    assert (art / "report.png").stat().st_size > 20_000

    # offline, clean, and hostile text stayed text
    assert not [c for c in console if c.startswith(("error", "pageerror"))], console
    offsite = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    assert offsite == [], f"the report fetched from the network: {offsite}"
    assert dialogs == []
    assert page.evaluate("() => window.__pwned === undefined")
    body = page.inner_text("body")
    for text in (XSS, SCRIPT, "Suite description with"):
        assert text in body, text
    assert "skipped" in body
    assert "failed" in body
    assert "RuntimeError" in body

    # the CSV link yields the run's samples, all of them
    with page.expect_download() as info:
        page.click("a#download-csv")
    download = info.value
    csv_path = art / (download.suggested_filename or "samples.csv")
    download.save_as(str(csv_path))
    got = pd.read_csv(csv_path)
    want = pd.read_json(hostile_run / "samples.jsonl", lines=True)
    assert len(got) == len(want) > 0
    assert sorted(got["target"].unique()) == sorted(want["target"].unique())
    assert SCRIPT in set(got["target"])
    for key in ("workload", "metric", "instance", "repetition", "phase"):
        assert list(got[key]) == list(want[key]), key
    assert got["value"].to_numpy() == pytest.approx(want["value"].to_numpy(), rel=1e-9)

    # it prints: the print stylesheet applies and Chromium lays it out as a PDF
    page.emulate_media(media="print")
    pdf = page.pdf(path=str(art / "report.pdf"), format="A4", print_background=True)
    assert pdf.startswith(b"%PDF")
    assert len(pdf) > 20_000
    page.close()
