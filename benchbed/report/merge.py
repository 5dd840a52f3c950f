"""One or several run directories ▸ one `ReportInput`: the data every report format is made from.

Several runs are merged into one page: samples, instances and fingerprints are concatenated; a target name that
occurs in more than one run is renamed `name@label` in every run it occurs in (label: the run id's random suffix
when those are unique, else the whole run id), so `local` of two runs become `local@a510` and `local@93fe`.
The baseline is the first run's baseline. Each run's params are made canonical once here, so the statistics that
follow never re-serialise 100 000 dicts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from benchbed.errors import ConfigError
from benchbed.finished import UNFINISHED_COLUMNS
from benchbed.results import RunData, load_run
from benchbed.rules import Rules, merged_thresholds, rules_of
from benchbed.stats import canonical_params


@dataclass(frozen=True)
class ReportInput:
    """The run(s) as the report sees them: target names already unique across runs."""

    runs: list[RunData]  # targets renamed where merged; meta["run_id"] always set
    labels: list[str]  # short label per run
    samples: pd.DataFrame  # every run's samples, params canonical JSON strings
    cases: pd.DataFrame
    env: dict[str, dict[str, Any]]
    baseline: str
    origin: dict[str, tuple[int, str]]  # display name ▸ (run index, name in that run)
    # instances whose samples are on disk but out of the statistics (`results.RunData.unfinished`), every run's
    unfinished: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNFINISHED_COLUMNS))

    @property
    def run_ids(self) -> list[str]:
        return [str(r.meta["run_id"]) for r in self.runs]

    @property
    def merged(self) -> bool:
        return len(self.runs) > 1

    def rules(self) -> Rules:
        """The first run's rules, with the suite `thresholds:` of every run (where two disagree, the first wins)."""
        first = rules_of(self.runs[0].meta) if self.runs else Rules()
        return replace(first, thresholds=merged_thresholds(rules_of(r.meta) for r in reversed(self.runs)))


def load_runs(paths: Sequence[Path]) -> list[RunData]:
    """`load_run` for each path (the one reader: its messages are the same for report and compare)."""
    return [load_run(path) for path in paths]


def _names(run: RunData) -> list[str]:
    names: list[str] = []
    for frame in (run.samples, run.cases):
        if "target" in frame.columns:
            names += [str(t) for t in frame["target"].dropna().unique()]
    targets = run.meta.get("targets")
    names += [str(t) for t in targets] if isinstance(targets, dict) else []
    names += list(run.env)
    if run.meta.get("baseline"):
        names.append(str(run.meta["baseline"]))
    return list(dict.fromkeys(names))


def _labels(run_ids: list[str]) -> list[str]:
    suffixes = [rid.rsplit("-", 1)[-1] for rid in run_ids]
    return suffixes if len(set(suffixes)) == len(suffixes) else run_ids


def _rename_frame(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    if frame.empty or "target" not in frame.columns or not mapping:
        return frame
    return frame.assign(target=frame["target"].map(lambda t: mapping.get(str(t), t) if isinstance(t, str) else t))


def _rename_meta(meta: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    out = dict(meta)
    if isinstance(meta.get("targets"), dict):
        out["targets"] = {mapping.get(str(k), str(k)): v for k, v in meta["targets"].items()}
    if isinstance(meta.get("boundaries"), dict):
        out["boundaries"] = {mapping.get(str(k), str(k)): v for k, v in meta["boundaries"].items()}
    if isinstance(meta.get("plan"), list):
        out["plan"] = [
            {**c, "target": mapping.get(str(c.get("target")), c.get("target"))} if isinstance(c, dict) else c
            for c in meta["plan"]
        ]
    if meta.get("baseline"):
        out["baseline"] = mapping.get(str(meta["baseline"]), str(meta["baseline"]))
    return out


def _canonical(samples: pd.DataFrame) -> pd.DataFrame:
    """params as canonical strings, once. Samples of one case repeat the same small dict, so the JSON text is
    cached under a type-aware key (1, 1.0 and True stay apart): a third of the time of serialising every row."""
    if samples.empty:
        return samples
    cache: dict[tuple[tuple[str, type, Any], ...], str] = {}
    out: list[str] = []
    for p in samples["params"]:
        if isinstance(p, dict):
            key = tuple((k, v.__class__, v) for k, v in p.items())
            try:
                text = cache.get(key)
                if text is None:
                    text = cache[key] = canonical_params(p)
            except TypeError:  # an unhashable value (list, dict): serialise this one
                text = canonical_params(p)
            out.append(text)
        else:
            out.append(canonical_params(p))
    return samples.assign(params=out)


def combine(runs: Sequence[RunData]) -> ReportInput:
    if not runs:
        raise ConfigError("no run directory given")
    ids = [str(r.meta.get("run_id") or r.dir.name) for r in runs]
    dup = [rid for rid, n in Counter(ids).items() if n > 1]
    if dup:
        raise ConfigError(f"run {dup[0]} given more than once")
    labels = _labels(ids) if len(runs) > 1 else ids
    names = [_names(r) for r in runs]
    seen = Counter(n for run_names in names for n in run_names)
    renamed: list[RunData] = []
    origin: dict[str, tuple[int, str]] = {}
    for i, (run, run_names) in enumerate(zip(runs, names, strict=True)):
        mapping = {n: f"{n}@{labels[i]}" for n in run_names if seen[n] > 1}
        for n in run_names:
            origin[mapping.get(n, n)] = (i, n)
        meta = {**_rename_meta(run.meta, mapping), "run_id": ids[i]}
        env = {mapping.get(t, t): e for t, e in run.env.items()}
        samples = _canonical(_rename_frame(run.samples, mapping))
        cases, unfinished = _rename_frame(run.cases, mapping), _rename_frame(run.unfinished, mapping)
        renamed.append(replace(run, meta=meta, samples=samples, cases=cases, env=env, unfinished=unfinished))
    if len(renamed) == 1:
        samples, cases = renamed[0].samples, renamed[0].cases
    else:
        sample_frames = [r.samples for r in renamed if not r.samples.empty]
        samples = pd.concat(sample_frames, ignore_index=True) if sample_frames else renamed[0].samples
        case_frames = [r.cases for r in renamed if not r.cases.empty]
        cases = pd.concat(case_frames, ignore_index=True) if case_frames else pd.DataFrame()
    env = {t: e for r in renamed for t, e in r.env.items()}
    baseline = str(renamed[0].meta.get("baseline") or "")
    left = [r.unfinished for r in renamed if not r.unfinished.empty]
    unfinished = pd.concat(left, ignore_index=True) if left else renamed[0].unfinished
    return ReportInput(renamed, labels, samples, cases, env, baseline, origin, unfinished)


def text_of(value: object) -> str:
    """A value from run.json shown as text (JSON for anything that is not a string)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)
