"""Run directories: versioned, append-only, readable after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchbed.errors import ResultsFormatError
from benchbed.results import SCHEMA_VERSION, RunWriter, load_run


def sample(i: int) -> dict[str, object]:
    return {
        "target": "local",
        "workload": "w",
        "params": {},
        "metric": "m",
        "unit": "s",
        "better": "lower",
        "value": float(i),
        "instance": 0,
        "repetition": i,
        "phase": "measure",
        "valid": True,
        "reason": None,
        "case": 0,
    }


def test_roundtrip_and_status(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "r", {"suite": {"name": "x"}})
    for i in range(3):
        w.sample(sample(i))
    w.case({"case": 0, "target": "local", "status": "ok"})
    w.env("local", {"kernel": "k"})
    w.finish("complete")
    run = load_run(tmp_path / "r")
    assert run.meta["status"] == "complete"
    assert list(run.samples["value"]) == [0.0, 1.0, 2.0]
    assert run.env == {"local": {"kernel": "k"}}
    assert len(run.cases) == 1


def test_never_overwrites(tmp_path: Path) -> None:
    RunWriter(tmp_path / "r", {}).finish("complete")
    with pytest.raises(ResultsFormatError, match="never overwritten"):
        RunWriter(tmp_path / "r", {})


def test_truncated_last_line_loses_only_that_sample(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "r", {})
    w.sample(sample(0))
    w.finish("incomplete")
    with (tmp_path / "r" / "samples.jsonl").open("a") as f:
        f.write('{"target": "local", "val')
    assert len(load_run(tmp_path / "r").samples) == 1


def test_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "r", {})
    w.finish("complete")
    (tmp_path / "r" / "samples.jsonl").write_text("garbage\n" + json.dumps(sample(1)) + "\n")
    with pytest.raises(ResultsFormatError, match=r"samples.jsonl:1: not valid JSON"):
        load_run(tmp_path / "r")


def test_newer_schema_refused(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "r", {})
    w.finish("complete", schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(ResultsFormatError, match="upgrade benchbed"):
        load_run(tmp_path / "r")


def test_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ResultsFormatError, match="not a benchbed run"):
        load_run(tmp_path)


def test_dead_writer_means_incomplete(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "r", {})
    w.update(controller_pid=2**22 + 12345)  # no such pid: the harness "died" while running
    assert load_run(tmp_path / "r").meta["status"] == "incomplete"


def test_sample_json_has_every_field() -> None:
    import dataclasses

    from benchbed.workloads.base import Sample

    s = Sample("m", 1.5, "ms", "lower", "cold", 3, False, "why", {"k": 1})
    assert s.to_json() == dataclasses.asdict(s)


def test_jsonl_reader_fast_path_matches_line_by_line_and_refuses_odd_lines(tmp_path: Path) -> None:
    """The whole-file parse is only a speed-up: files that are not one object per line take the careful path."""
    from benchbed.results import _read_jsonl

    good = tmp_path / "good.jsonl"
    rows = [{"i": i, "v": i / 3, "s": "x\\ny"} for i in range(50)]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n", encoding="utf-8")
    assert _read_jsonl(good) == rows
    cut = tmp_path / "cut.jsonl"
    cut.write_text(good.read_text(encoding="utf-8").rstrip("\n") + '\n{"i": 5', encoding="utf-8")
    assert _read_jsonl(cut) == rows  # a crash cut the last line short: that line only is lost
    for name, text in (
        ("two.jsonl", '{"a": 1}, {"b": 2}\n{"c": 3}\n'),
        ("split.jsonl", '{"a": 1,\n"b": 2}\n{"c": 3}\n'),
    ):
        bad = tmp_path / name
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ResultsFormatError, match=rf"{name}:1: not valid JSON"):
            _read_jsonl(bad)
