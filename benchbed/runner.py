"""Executes a plan: stage the agent, write run.json, run the cases (`lifecycle`), in lanes when `--parallel`
(`lanes`), and re-plan after the pilot of `instances: auto` (`pilot`).

Every sample is written the moment its line arrives. A failing instance becomes a `failed` case with its
reason and stderr tail; the suite goes on. Ctrl-C tears down what is provisioned and marks the run incomplete.
"""

from __future__ import annotations

import logging
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from benchbed import __version__
from benchbed.agent.build import Agent, build_agent
from benchbed.config import LoadedSuite
from benchbed.errors import StoreError
from benchbed.fileio import store_error
from benchbed.interrupts import held_signals
from benchbed.lanes import lanes, run_lanes
from benchbed.lifecycle import Cases, Observer, SerialSink
from benchbed.pilot import assess
from benchbed.plan import Case, Plan, make_plan
from benchbed.results import RunWriter, check_store, load_run
from benchbed.resume import ResumePoint
from benchbed.rules import resolve
from benchbed.schema import AnyTarget
from benchbed.targets.registry import kind

log = logging.getLogger(__name__)
TargetSpecs = dict[str, AnyTarget]


class Runner:
    def __init__(
        self,
        loaded: LoadedSuite,
        specs: TargetSpecs,
        plan: Plan,
        out_dir: Path,
        run_id: str,
        observer: Observer | None = None,
        parallel: int = 1,
        *,
        options: dict[str, Any] | None = None,
        resume: ResumePoint | None = None,
    ) -> None:
        self.loaded = loaded
        self.specs = specs
        self.plan = plan
        self.run_dir = out_dir / run_id
        self.run_id = run_id
        self.observer = observer
        self.parallel = max(1, parallel)
        self.options = options or {}  # the plan's command-line options (--only, --repeat): a resume re-plans with them
        self.resume = resume
        self.cases: Cases | None = None
        self._counts = {"ok": 0, "skipped": 0, "failed": 0}
        # Every target's implementation (with its optional dependency) loads before the first case: a missing
        # binding is one line and exit 2 up front, not a column of failed instances after the baseline ran.
        for name in plan.targets:
            kind(specs[name].kind).implementation(name)

    @property
    def counts(self) -> dict[str, int]:
        return self.cases.counts if self.cases else self._counts

    @property
    def failed_targets(self) -> dict[str, str]:
        return self.cases.failed_targets if self.cases else {}

    def _meta(self, agent: Agent) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "benchbed_version": __version__,
            "suite": {"name": self.loaded.suite.name, "path": str(self.loaded.path), "text": self.loaded.source_text},
            "targets": {n: s.recorded() for n, s in self.specs.items() if n in self.plan.targets},  # no secrets
            "boundaries": {n: kind(self.specs[n].kind).boundary(self.specs[n]) for n in self.plan.targets},
            "baseline": self.plan.baseline,
            "seed": self.plan.seed,
            "parallel": self.parallel,
            "options": self.options,
            "plan": [c.to_json() for c in self.plan.cases],
            "agent": {
                "sha256": agent.sha256,
                "size": agent.size,
                "modules": [p.name for p in self.loaded.module_paths],
                "bundles": {name: str(path) for name, path in sorted(self.loaded.bundles.items())},
            },
            "controller": {"host": platform.node(), "python": sys.version.split()[0], "argv": sys.argv},
            "rules": resolve(self.loaded.suite.thresholds).to_json(),
        }

    def execute(self) -> RunWriter:
        check_store(self.run_dir.parent)
        status = "incomplete"
        note: dict[str, str] = {}
        writer: RunWriter | None = None
        sink: SerialSink | None = None
        set_up = False  # the run directory has its run.json, reserve and agent: from here on it is a run
        try:
            with held_signals():  # an interrupt during setup lands once the run exists, so it ends up marked
                if self.resume is None:
                    writer = RunWriter(self.run_dir, {})
                    agent = self._stage_agent()
                    writer.update(**self._meta(agent))
                else:
                    writer = RunWriter.reopen(self.run_dir, self.resume.entry)
                    agent = Agent(self.run_dir / "agent.pyz", str(writer.meta["agent"]["sha256"]), 0)
                set_up = True
                sink = SerialSink(writer)
                attempt = self.resume.attempt if self.resume else 0
                self.cases = Cases(self.specs, self.run_id, agent, self.observer, attempt)
                if self.resume:
                    self.cases.count_done(self.resume.done)
            if self.observer:
                self.observer.started(self.plan, self.run_dir)
            self._run_cases(self.resume.todo if self.resume else self.plan.cases, sink)
            if self.plan.pilot and not self.cases.stopping.is_set():
                rest = self._after_pilot(writer)
                self._run_cases(rest, sink)
            status = "complete"
        except StoreError as err:
            note = {"status_note": str(err)}  # the run ends here; what was written is kept, and says why
            if writer is not None and not set_up and self.resume is None:
                gone, writer = writer.discard(err), None  # full before anything ran: no half-made run
                raise gone from err
            raise
        finally:
            with held_signals():  # a second Ctrl-C or SIGTERM waits until targets are released and the run marked
                if sink is not None:
                    sink.close()
                if self.cases is not None:
                    self.cases.close_targets()
                if writer is not None:
                    self._finish(writer, status, note)
        return writer

    def _stage_agent(self) -> Agent:
        """Build the agent into the run directory: the exact bytes every target runs, kept with the results."""
        staging = self.run_dir / ".agent"
        try:
            built = build_agent(staging, self.loaded.module_paths, self.loaded.bundles)
            built.path.replace(self.run_dir / "agent.pyz")
            staging.rmdir()
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise store_error(self.run_dir / "agent.pyz", err) from err
        return Agent(self.run_dir / "agent.pyz", built.sha256, built.size)

    def _finish(self, writer: RunWriter, status: str, note: dict[str, str]) -> None:
        try:
            writer.finish(status, counts=self.counts, failed_targets=self.failed_targets, **note)
        except StoreError as err:
            if note:  # the run is ending on a store error already: that one is the line the user sees
                log.warning("%s", err)
            else:
                raise

    def _run_cases(self, cases: list[Case], sink: SerialSink) -> None:
        assert self.cases is not None
        run = self.cases
        if self.parallel > 1:
            run_lanes(lanes(cases, self.specs), lambda c: run.run(c, sink), self.parallel, run.stopping, run.stop)
        else:
            for case in cases:
                run.run(case, sink)

    def stop(self) -> None:
        """End the run early: no new case starts, and live sessions abort now."""
        if self.cases:
            self.cases.stop()

    def _after_pilot(self, writer: RunWriter) -> list[Case]:
        """`instances: auto`: the pilot (the plan so far) has run on the baseline; choose N per case from its
        noise, plan the remaining instances of every target, and record both in run.json."""
        pilot = self.plan
        suite = self.loaded.suite
        samples = load_run(self.run_dir).samples
        assessed = assess(samples[samples["target"] == pilot.baseline], suite, pilot.pilot)
        rest = make_plan(
            suite,
            list(self.specs),
            seed=pilot.seed,
            only=pilot.only,
            instances_per_key={k: c.instances for k, c in assessed.items()},
            done=dict.fromkeys(pilot.pilot, suite.defaults.pilot_instances),  # pilot instances count
            first_index=len(pilot.cases),
        )
        self.plan = Plan([*pilot.cases, *rest.cases], pilot.seed, pilot.targets, pilot.baseline, [], pilot.only)
        writer.update(plan=[c.to_json() for c in self.plan.cases], pilot={k: c.to_json() for k, c in assessed.items()})
        if self.observer:
            self.observer.replanned(self.plan)
        return rest.cases
