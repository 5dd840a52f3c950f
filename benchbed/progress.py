"""The run's progress on the terminal: a rich bar in a terminal, one plain line per instance otherwise (CI logs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from benchbed.console import out


class Progress:
    """rich progress bar in a terminal, one plain line per instance otherwise (CI logs)."""

    def __init__(self) -> None:
        self.tty = out.is_terminal
        self.bar: Bar | None = None
        self.task: Any = None
        self.done = 0
        self.total = 0

    def started(self, plan: Any, run_dir: Path) -> None:
        self.total = len(plan.cases)
        n = f"{self.total} instances"
        what = f"pilot of {n} on {plan.baseline}, then N per case" if plan.pilot else n
        out.print(f"run {run_dir.name}: {what} on {', '.join(plan.targets)} (seed {plan.seed})", markup=False)
        if self.tty:
            self.bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=out,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("running", total=self.total)

    def replanned(self, plan: Any) -> None:
        """`instances: auto`: the pilot chose N, so the total is known now."""
        self.total = len(plan.cases)
        out.print(f"pilot done: {self.total} instances in all", markup=False)
        if self.bar is not None:
            self.bar.update(self.task, total=self.total)

    def case_started(self, case: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"{case.target}: {case.workload}")

    def case_finished(self, case: Any, record: dict[str, Any]) -> None:
        self.done += 1
        status = record["status"]
        note = f" — {record['reason']}" if record.get("reason") else ""
        line = (
            f"[{self.done}/{self.total}] {case.target} {case.workload} {json.dumps(case.params)} "
            f"#{case.instance}: {status}{note}"
        )
        if self.bar is not None:
            self.bar.advance(self.task)
            if status == "failed":
                self.bar.console.print(line, markup=False)
        else:
            out.print(line, markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
