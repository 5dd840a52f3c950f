"""The agent's wire protocol, defined once: agent, runner and results store all import it. Stdlib-only (it is packed
into the agent zipapp and runs inside every target).

The agent writes one JSON object per line on stdout, each with `t` (its kind, `Line`). The controller sends
`PROTOCOL` in the spec; the agent refuses another version, and the controller refuses an agent whose `hello`
names another one, so the two sides can never silently disagree about a line's meaning.

  hello        protocol, agent (version), sha256 (of the zipapp), pid, python
  fingerprint  data: the environment inside the target
  sample       the `Sample` fields (SAMPLE_FIELDS)
  skipped      reason
  error        error (a class name), message, traceback (optional)
  stack        data: the userland the workload ran on (agent/stack.py: digest, files, driver), seconds taken
  done         samples (count), wall_s, settle (optional: what the settle gate waited and saw, agent/settle.py)
  workload     name (`agent.pyz list`)
  serve        port, steps, plan: a server in the target answered its first request (serve.latency); with a plan,
               the controller drives that load across the boundary and posts the results to the server

A sample on disk (samples.jsonl) is the wire sample plus the case it belongs to: `sample_row` builds it, and
SAMPLE_COLUMNS is the column order `load_run` gives it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Literal

PROTOCOL = 1
# Set by a controller that holds the agent's stdin open for as long as it lives (the local target): "stdin" asks
# the agent to end itself and its process group once that stdin closes (the controller was killed).
WATCH_ENV = "BENCHBED_AGENT_WATCH"

Better = Literal["higher", "lower"]
Phase = Literal["cold", "warmup", "measure"]


class Line(str, enum.Enum):  # noqa: UP042 -- not StrEnum: a target's python may be older than 3.11
    HELLO = "hello"
    FINGERPRINT = "fingerprint"
    SAMPLE = "sample"
    SKIPPED = "skipped"
    ERROR = "error"
    STACK = "stack"
    DONE = "done"
    WORKLOAD = "workload"
    SERVE = "serve"


@dataclass(frozen=True)
class Sample:
    """One measured value. `better` makes every comparison direction-aware; `labels` carry free-form context
    (the interpreter measured, a pytest benchmark's full name) kept on disk and in `load_run`."""

    metric: str
    value: float
    unit: str
    better: Better
    phase: Phase = "measure"
    repetition: int = 0
    valid: bool = True
    reason: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # hot path (one call per sample): a flat dict, not dataclasses.asdict's recursive deep copy
        return {
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "better": self.better,
            "phase": self.phase,
            "repetition": self.repetition,
            "valid": self.valid,
            "reason": self.reason,
            "labels": dict(self.labels),
        }


SAMPLE_FIELDS = ("metric", "value", "unit", "better", "phase", "repetition", "valid", "reason", "labels")
CASE_FIELDS = ("target", "workload", "params", "instance", "case")
# samples.jsonl / load_run column order (labels last: it came after the first readers)
SAMPLE_COLUMNS = [
    "target",
    "workload",
    "params",
    "metric",
    "unit",
    "better",
    "value",
    "instance",
    "repetition",
    "phase",
    "valid",
    "reason",
    "case",
    "labels",
]


def encode(kind: Line, **fields: Any) -> str:
    """One protocol line (without the newline)."""
    return json.dumps({"t": kind.value, **fields}, default=str, allow_nan=True)


def decode(line: str) -> tuple[Line, dict[str, Any]] | None:
    """(kind, fields) of a protocol line; None for anything else (a stray print, a cut line, an unknown kind)."""
    try:
        rec = json.loads(line)
        kind = Line(rec.pop("t"))
    except (json.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
        return None
    return kind, rec


def sample_row(case: dict[str, Any], sample: dict[str, Any]) -> dict[str, Any]:
    """A samples.jsonl row: the case's CASE_FIELDS, then the wire sample's fields as the agent sent them."""
    return {**case, **sample}
