"""The wire protocol is one definition: what the agent encodes, the runner decodes and the store keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchbed.protocol import CASE_FIELDS, PROTOCOL, SAMPLE_COLUMNS, SAMPLE_FIELDS, Line, Sample, decode, encode
from benchbed.results import RunWriter, load_run


def test_sample_round_trip_through_the_store(tmp_path: Path) -> None:
    sample = Sample("import_time", 12.5, "ms", "lower", "measure", 3, labels={"python": "python3", "n": 2})
    kind, wire = decode(encode(Line.SAMPLE, **sample.to_json())) or (None, {})
    assert kind is Line.SAMPLE
    assert tuple(wire) == SAMPLE_FIELDS
    assert set(SAMPLE_COLUMNS) == set(SAMPLE_FIELDS) | set(CASE_FIELDS)
    writer = RunWriter(tmp_path / "r", {})
    writer.sample({"target": "t", "workload": "w", "params": {}, "instance": 0, "case": 0, **wire})
    writer.finish("complete")
    samples = load_run(tmp_path / "r").samples
    assert list(samples.columns) == SAMPLE_COLUMNS
    assert samples["labels"].tolist() == [{"python": "python3", "n": 2}]  # labels are kept, not dropped


def test_old_rows_without_labels_read_as_empty(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "r", {})
    row = {"target": "t", "workload": "w", "params": {}, "metric": "m", "unit": "s", "better": "lower", "value": 1.0}
    writer.sample(row)
    writer.finish("complete")
    assert load_run(tmp_path / "r").samples["labels"].tolist() == [{}]


@pytest.mark.parametrize("line", ["", "not json", "[1, 2]", '{"no_t": 1}', '{"t": "teapot"}', '{"t": "sampl'])
def test_anything_else_is_not_a_protocol_line(line: str) -> None:
    assert decode(line) is None


def test_agent_refuses_another_protocol_version(capsys: pytest.CaptureFixture[str]) -> None:
    from benchbed.agent.main import Emitter, run

    lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    rc = run({"workload": "util.noop", "protocol": PROTOCOL + 1}, Emitter(Out()))  # type: ignore[arg-type]
    records = [json.loads(line) for line in lines]
    assert rc == 3
    assert [r["t"] for r in records] == ["hello", "error"]
    assert records[1]["error"] == "ProtocolError"
