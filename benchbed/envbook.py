"""env/<target>.json as a run builds it: the fingerprint (once per target) plus each distinct stack the target ran.

The fingerprint arrives in a target's first instance; a stack record (agent/stack.py) arrives after every
workload, and differs by workload (each maps its own libraries). The file is rewritten whole (atomically) when
either adds something, so a reader sees a complete fingerprint with every stack seen so far.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from benchbed.agent.stack import combine


class EnvSink(Protocol):
    def env(self, target: str, data: dict[str, Any]) -> None: ...


class EnvBook:
    def __init__(self) -> None:
        self.envs: dict[str, dict[str, Any]] = {}  # target → its fingerprint
        self.stacks: dict[str, dict[str, dict[str, Any]]] = {}  # target → stack digest → the agent's record
        self._lock = threading.Lock()  # lanes run in threads

    def fingerprint(self, target: str, data: dict[str, Any], sink: EnvSink) -> None:
        with self._lock:
            self.envs[target] = data
            self._write(target, sink)

    def stack(self, target: str, record: dict[str, Any], sink: EnvSink) -> dict[str, Any]:
        """The case record's stack fields; a digest not seen before for this target goes into its env file."""
        digest = record.get("digest")
        driver = record.get("driver") or {}
        with self._lock:
            known = self.stacks.setdefault(target, {})
            if str(digest) not in known:
                known[str(digest)] = record
                self._write(target, sink)
        return {"stack_digest": digest, "driver_digest": combine(driver) if driver else None}

    def _write(self, target: str, sink: EnvSink) -> None:
        if target in self.envs:
            stacks = self.stacks.get(target)
            sink.env(target, {**self.envs[target], **({"stacks": stacks} if stacks else {})})
