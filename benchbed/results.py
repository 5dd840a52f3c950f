"""Run directories: the only link between `run` and `report`.

Layout of results/<run-id>/:
  run.json       suite as given, resolved plan + seed, versions, agent sha256, times, status
  agent.pyz      the exact agent bytes every target ran
  samples.jsonl  one sample per line (`benchbed.protocol.sample_row`), appended and flushed as it arrives
  cases.jsonl    one line per instance: ok / skipped / failed, reason, stderr tail, startup phases
  env/<t>.json   fingerprint gathered inside target t

Schema history:
  1 — first version (benchbed 0.1). Sample `labels` were always written; `load_run` keeps them since 0.2
      (a reader-side change: no new schema). run.json has `rules` since 0.2 (thresholds and comparability as
      resolved at run time, `benchbed.rules`); readers of a run.json without it fall back to the suite text.
      Also additive (no new schema; older runs read as before): run.json `options` (--only, --repeat),
      `resumed` (one entry per `run --resume`) and `status_note` when a run ended on a store error; samples and
      case records of a resumed instance carry `attempt`. Only samples of instances with an `ok` record are
      statistics (`finished_samples`). A `.reserve` file lives in the directory while the run is written (a
      killed run keeps it until resumed). Case records of libvirt targets carry `start` (booted | restored).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchbed.errors import ResultsFormatError, StoreError
from benchbed.fileio import store_error, write_json
from benchbed.owner import owner_alive
from benchbed.protocol import SAMPLE_COLUMNS

SCHEMA_VERSION = 1
SCALAR_COLUMNS = [c for c in SAMPLE_COLUMNS if c != "labels"]  # flat files (the report's CSV)
FSYNC_INTERVAL_S = 0.5
RESERVE = ".reserve"  # room kept back so a full store can still be told how the run ended (see RunWriter)
RESERVE_MIN = 64 * 1024


def check_store(out_dir: Path) -> None:
    """Refuse a results store that cannot take files before anything runs (read-only, no permission)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".benchbed-probe-", dir=out_dir)
        os.close(fd)
        Path(probe).unlink()
    except OSError as err:
        raise StoreError(
            f"results store {out_dir} is not writable ({err.strerror or err})", hint="pick another --out"
        ) from err


def new_run_id(suite: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", suite)[:40]
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


def _last_line_end(fd: int, size: int) -> int:
    """Offset just past the last newline of the file (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        at = chunk.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        pos = start
    return 0


class JsonlAppender:
    """Unbuffered O_APPEND writer: each line reaches the OS at once (a killed harness loses nothing);
    fsync is throttled so durability against an OS crash costs no per-sample latency.

    A line is written whole or not at all: a short write is continued, and a failed one (disk full) is cut back
    to the last complete line before the error is raised, so the file never holds half a record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
            self.size = os.fstat(self.fd).st_size
            if self.size:  # appending to a file a killed writer left: never after half a line
                self.size = _last_line_end(self.fd, self.size)
                os.ftruncate(self.fd, self.size)
        except OSError as err:
            raise store_error(path, err) from err
        self._last_sync = time.monotonic()

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, default=str, allow_nan=True) + "\n").encode()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)  # back to the last complete line
            raise store_error(self.path, err) from err
        self.size += len(data)
        now = time.monotonic()
        if now - self._last_sync > FSYNC_INTERVAL_S:
            self.sync()
            self._last_sync = now

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as err:
            raise store_error(self.path, err) from err

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.fsync(fd)
            except OSError as err:
                raise store_error(self.path, err) from err
            finally:
                os.close(fd)


class RunWriter:
    """One run directory being written. A store that fills up mid-run still gets its run marked: a reserve file,
    as big as run.json and then some, is given back just before the final run.json is written."""

    def __init__(self, run_dir: Path, meta: dict[str, Any]) -> None:
        if run_dir.exists():
            raise ResultsFormatError(f"{run_dir}: already exists; a run directory is never overwritten")
        try:
            (run_dir / "env").mkdir(parents=True)
        except OSError as err:
            raise ResultsFormatError(
                f"{run_dir}: cannot create the run directory ({err.strerror or err})", hint="pick another --out"
            ) from err
        self.dir = run_dir
        self.meta = {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "started": datetime.now(UTC).isoformat(),
            "controller_pid": os.getpid(),
            "controller_host": socket.gethostname(),
            **meta,
        }
        self._reserved = 0
        try:
            self.update()
        except StoreError as err:
            raise self.discard(err) from err  # too full for the first run.json and its reserve: no half-made run
        self.samples = JsonlAppender(run_dir / "samples.jsonl")
        self.cases = JsonlAppender(run_dir / "cases.jsonl")

    def discard(self, err: StoreError) -> StoreError:
        """Remove a run directory nothing has run in yet (the store filled up while it was being set up), so the
        store holds no run that says `running` forever and no temp file; `err` said so, in one line."""
        for appender in (getattr(self, "samples", None), getattr(self, "cases", None)):
            if appender is not None:
                with contextlib.suppress(OSError, StoreError):
                    appender.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return StoreError(f"{err.args[0]}; nothing ran, the run directory was removed", hint=err.hint)

    @classmethod
    def reopen(cls, run_dir: Path, resumed: dict[str, Any]) -> RunWriter:
        """Continue writing an existing run (`benchbed run --resume`): status `running` again, this harness its
        controller, the resumption listed under `resumed`; samples and cases are appended."""
        self = cls.__new__(cls)
        self.dir = run_dir
        self.meta = _json_object(run_dir / "run.json")
        for key in ("finished", "status_note"):
            self.meta.pop(key, None)
        self.meta.update(status="running", controller_pid=os.getpid(), controller_host=socket.gethostname())
        self.meta["resumed"] = [*(self.meta.get("resumed") or []), resumed]
        self._reserved = 0
        (run_dir / "env").mkdir(exist_ok=True)
        self.update()
        self.samples = JsonlAppender(run_dir / "samples.jsonl")
        self.cases = JsonlAppender(run_dir / "cases.jsonl")
        return self

    def sample(self, record: dict[str, Any]) -> None:
        self.samples.append(record)

    def case(self, record: dict[str, Any]) -> None:
        self.samples.sync()
        self.cases.append(record)

    def env(self, target: str, data: dict[str, Any]) -> None:
        """Written whole each time (atomic): the lifecycle adds each new stack to the target's fingerprint."""
        write_json(self.dir / "env" / f"{target}.json", data, what="results store")

    def update(self, **fields: Any) -> None:
        self.meta.update(fields)
        write_json(self.dir / "run.json", self.meta, what="results store")
        self._reserve(2 * (self.dir / "run.json").stat().st_size + RESERVE_MIN)

    def _reserve(self, size: int) -> None:
        if size <= self._reserved:
            return
        try:
            fd = os.open(self.dir / RESERVE, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            self._reserved = size
        except OSError as err:
            raise store_error(self.dir / RESERVE, err) from err

    def finish(self, status: str, **fields: Any) -> None:
        """Close the files and write the final run.json (with the reserve given back first). Raises StoreError
        only if even that fails; the samples and cases written so far are complete lines either way."""
        errors: list[StoreError] = []
        for appender in (self.samples, self.cases):
            try:
                appender.close()
            except StoreError as err:
                errors.append(err)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / RESERVE).unlink()
        self._reserved = 2**62  # no new reserve for the last write
        try:
            self.update(status=status, finished=datetime.now(UTC).isoformat(), **fields)
        except StoreError as err:
            errors.append(err)
        if errors:
            raise errors[0]


@dataclass(frozen=True)
class RunData:
    dir: Path
    meta: dict[str, Any]
    samples: pd.DataFrame
    cases: pd.DataFrame
    env: dict[str, dict[str, Any]]


def _text(path: Path) -> str:
    """A run file as text; anything unreadable is one ResultsFormatError naming the file (the one set of messages
    `report` and `compare` share)."""
    try:
        data = path.read_bytes()
    except IsADirectoryError as err:
        raise ResultsFormatError(f"{path}: not a file (a directory)") from err
    except OSError as err:
        raise ResultsFormatError(f"{path}: cannot read ({err.strerror or err})") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ResultsFormatError(f"{path}:{line}: not UTF-8 text (byte {err.start})") from err


def _json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise ResultsFormatError(f"{path}: corrupt JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(value, dict):
        raise ResultsFormatError(f"{path}: not a JSON object (a {type(value).__name__})")
    return value


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file of a run (a cut-off last line is dropped)."""
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = _text(path).splitlines()
    filled = [line for line in lines if line.strip()]
    try:  # one parse of the whole file as an array: ~1.5-2x faster than a loads() per line (keys memoised once)
        parsed: list[Any] = json.loads("[" + ",".join(filled) + "]")
    except json.JSONDecodeError:
        parsed = []  # a cut-off last line or a corrupt one: the line-by-line reader below says which
    if filled and len(parsed) == len(filled) and all(isinstance(row, dict) for row in parsed):
        return parsed  # one object per line, as written; anything else takes the careful path
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines):  # a crash can cut the last line short: that one sample is lost, no more
                break
            raise ResultsFormatError(f"{path}:{i}: not valid JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise ResultsFormatError(f"{path}:{i}: not a JSON object (a {type(row).__name__})")
        rows.append(row)
    return rows


SAMPLE_KEYS = frozenset({"target", "workload", "metric", "value"})
NUMBER = (int, float)


def _sample_rows(path: Path) -> list[dict[str, Any]]:
    """samples.jsonl's records, each one a sample: the keys every writer writes, a number (or null) as value. A
    record that is not one would otherwise be a row of NaN that breaks whatever reads it next."""
    rows = _read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not row.keys() >= SAMPLE_KEYS:
            missing = ", ".join(sorted(SAMPLE_KEYS - row.keys()))
            raise ResultsFormatError(f"{path}: record {i} is not a sample (no {missing})")
        value = row["value"]
        if value is not None and (type(value) is bool or not isinstance(value, NUMBER)):
            raise ResultsFormatError(f"{path}: record {i} has a value that is not a number ({value!r:.40})")
    return rows


def _writer_alive(meta: dict[str, Any]) -> bool:
    """A 'running' run whose harness died is incomplete. Only checkable on the host that wrote it."""
    pid = meta.get("controller_pid")
    return not isinstance(pid, int) or owner_alive(f"{meta.get('controller_host')}:{pid}")


def attempt_key(row: dict[str, Any]) -> tuple[Any, int]:
    """Which try of which planned instance a sample or case record belongs to (a resumed run retries some)."""
    return row.get("case"), int(row.get("attempt") or 0)


def finished_samples(
    rows: list[dict[str, Any]], case_rows: list[dict[str, Any]], meta: dict[str, Any]
) -> tuple[list[dict[str, Any]], int]:
    """The samples of instances that finished `ok`, and how many others were left out. An instance that failed
    or was cut short may have written samples before it died; they stay on disk, out of the statistics. Cut short
    means: planned (run.json's plan) but without a case record. A directory without a plan (hand-made, imported)
    loses only the samples of instances recorded as not ok."""
    outcome = {attempt_key(c): c.get("status") for c in case_rows}
    planned = bool(meta.get("plan"))

    def counts(row: dict[str, Any]) -> bool:
        if "case" not in row:
            return True
        status = outcome.get(attempt_key(row))
        return status == "ok" if status is not None or planned else True

    kept = [r for r in rows if counts(r)]
    return kept, len(rows) - len(kept)


def load_run(run_dir: Path) -> RunData:
    """Read a run directory into tidy DataFrames (one row per sample / per instance). The one reader of run
    directories: every way one can be unreadable is a ResultsFormatError naming the file, for every command."""
    meta_path = run_dir / "run.json"
    if not run_dir.is_dir():
        raise ResultsFormatError(
            f"{run_dir}: not a benchbed run (no such run directory)", hint="pass a results/<run-id> dir"
        )
    if not meta_path.exists():
        raise ResultsFormatError(f"{run_dir}: not a benchbed run (no run.json)", hint="pass a results/<run-id> dir")
    meta = _json_object(meta_path)
    version = meta.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultsFormatError(f"{meta_path}: no schema_version")
    if version > SCHEMA_VERSION:
        raise ResultsFormatError(
            f"{run_dir}: written with results schema {version}, this benchbed reads up to {SCHEMA_VERSION}",
            hint="upgrade benchbed",
        )
    if version < 1:
        raise ResultsFormatError(f"{meta_path}: schema_version {version} is no benchbed results schema (1..)")
    if meta.get("status") == "running" and not _writer_alive(meta):
        meta["status"] = "incomplete"
        meta["status_note"] = "the harness that wrote this run is gone (killed or crashed)"
    case_rows = _read_jsonl(run_dir / "cases.jsonl")
    rows, unfinished = finished_samples(_sample_rows(run_dir / "samples.jsonl"), case_rows, meta)
    if unfinished:
        meta["unfinished_samples"] = unfinished
    samples = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    samples["value"] = pd.to_numeric(samples["value"], errors="coerce")
    labels = [v if isinstance(v, dict) else {} for v in samples["labels"]]  # rows of older writers have none
    samples["labels"] = pd.Series(labels, index=samples.index, dtype=object)
    cases = pd.DataFrame(case_rows)
    env = {path.stem: _json_object(path) for path in sorted((run_dir / "env").glob("*.json"))}
    return RunData(run_dir, meta, samples, cases, env)
