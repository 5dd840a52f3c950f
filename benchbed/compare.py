"""`benchbed compare`: two runs (before/after a driver upgrade) or two targets of one run ▸ verdicts + env diff.

The gate's contract: exit 1 iff any metric's verdict is `regression` (rules in `benchbed.verdict`); environment
differences outside the fields under test are warnings (they make a comparison suspect, not failed).
Renderers here return strings / dicts; only the CLI prints or writes.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchbed.errors import ConfigError
from benchbed.fileio import write_atomic
from benchbed.fmt import fmt_num, md, params_label
from benchbed.results import RunData, load_run
from benchbed.rules import EnvChange, merged_thresholds, rules_of
from benchbed.stacks.parity import DIFFERS, SideStacks, annotate, expected_differences
from benchbed.stats import (
    DEFAULT_SEED,
    KEYS,
    _median,
    bootstrap_ci,
    canonical_params,
    instance_medians,
    unfinished_by_case,
)
from benchbed.verdict import ALPHA, compare_pairs


@dataclass(frozen=True)
class Side:
    run: RunData
    target: str

    @property
    def label(self) -> str:
        return f"{self.run.dir.name}:{self.target}"


@dataclass(frozen=True)
class Comparison:
    pairs: list[tuple[Side, Side]]
    verdicts: pd.DataFrame
    under_test: dict[str, list[EnvChange]]  # per "base → new" pair label
    warnings: dict[str, list[EnvChange]]
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # differences by design (a VM's own GPU driver)
    unfinished: list[str] = field(default_factory=list)  # per side and case: samples left out of the statistics

    @property
    def regressions(self) -> int:
        return int((self.verdicts["verdict"] == "regression").sum())

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.verdicts["verdict"].value_counts().items()}

    @property
    def stack_notes(self) -> list[str]:
        """One line per case whose two sides ran different userland bytes: its ratio is not the boundary's alone."""
        if "stack" not in self.verdicts.columns:
            return []
        rows = self.verdicts[self.verdicts["stack"] == DIFFERS]
        lines = [f"{r['workload']} {params_label(r['params'])}: {r['stack_note']}" for r in rows.to_dict("records")]
        return list(dict.fromkeys(lines))


def _targets(run: RunData) -> list[str]:
    names = [str(t) for t in dict.fromkeys(run.samples["target"].dropna())]
    return names or [str(t) for t in run.meta.get("targets", {})]


def _pick(run: RunData, name: str, what: str) -> str:
    if name not in _targets(run):
        raise ConfigError(f"{run.dir}: no samples from {what} {name!r}", hint=f"targets in this run: {_targets(run)}")
    return name


def pair_sides(
    base: RunData, new: RunData | None, base_target: str | None, target: str | None
) -> list[tuple[Side, Side]]:
    """Which targets to compare. One run: --base-target (default its baseline) vs --target (default every other
    target). Two runs: the named target(s); else the targets both runs share; else, one target each, those two."""
    if new is None:
        b = _pick(base, base_target or str(base.meta.get("baseline", "local")), "base target")
        others = [target] if target else [t for t in _targets(base) if t != b]
        if not others:
            raise ConfigError(f"{base.dir}: only target {b!r} has samples; nothing to compare it with")
        return [(Side(base, b), Side(base, _pick(base, t, "target"))) for t in others]
    ta, tb = _targets(base), _targets(new)
    if base_target or target:
        bt = _pick(base, base_target or target or "", "base target")
        nt = _pick(new, target or base_target or "", "target")
        return [(Side(base, bt), Side(new, nt))]
    common = [t for t in ta if t in tb]
    if common:
        return [(Side(base, t), Side(new, t)) for t in common]
    if len(ta) == 1 and len(tb) == 1:
        return [(Side(base, ta[0]), Side(new, tb[0]))]
    raise ConfigError(f"runs share no target ({ta} vs {tb})", hint="name them with --base-target and --target")


def compare(
    base_dir: Path,
    new_dir: Path | None = None,
    *,
    base_target: str | None = None,
    target: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    under_test: Sequence[str] | None = None,
    alpha: float = ALPHA,
    n_resamples: int = 4999,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Load, pair, judge (one Holm family over every pair and metric), diff the environments."""
    base = load_run(base_dir)
    new = load_run(new_dir) if new_dir is not None and new_dir.resolve() != base_dir.resolve() else None
    if new_dir is not None and new is None and not (base_target or target):
        raise ConfigError(f"{base_dir} given twice", hint="compare two targets of one run with --base-target/--target")
    pairs = pair_sides(base, new, base_target, target)
    rules = rules_of(base.meta)  # the baseline's rules decide; thresholds: the new run's suite wins, then --threshold
    suites = merged_thresholds([rules, rules_of((new or base).meta)])
    inst_cache: dict[Path, pd.DataFrame] = {}

    def inst(side: Side) -> pd.DataFrame:
        if side.run.dir not in inst_cache:
            inst_cache[side.run.dir] = instance_medians(side.run.samples)
        df = inst_cache[side.run.dir]
        return df[df["target"] == side.target]

    frames = [(inst(a), inst(b)) for a, b in pairs]
    info = pd.concat([a.run.samples for a, _ in pairs] + [b.run.samples for _, b in pairs], ignore_index=True)
    info["params"] = info["params"].map(canonical_params)
    verdicts = compare_pairs(
        frames,
        thresholds=rules.threshold_rules(suites, thresholds),
        alpha=alpha,
        n_resamples=n_resamples,
        seed=seed,
        info=info,
    )
    if verdicts.empty:
        raise ConfigError("no (workload, params, metric) was measured on both sides", hint="same suite on both?")
    verdicts = _with_new_ci(verdicts, frames, seed)
    stacks = {
        (a.target, b.target): (
            SideStacks.of(a.run.cases, a.run.env, a.target),
            SideStacks.of(b.run.cases, b.run.env, b.target),
        )
        for a, b in pairs
    }
    verdicts = annotate(verdicts, stacks, accepted="stack" in (under_test or ()))
    tested: dict[str, list[EnvChange]] = {}
    warned: dict[str, list[EnvChange]] = {}
    for a, b in pairs:
        label = f"{a.label} → {b.label}"
        patterns = (under_test or rules.under_test_runs) if new is not None else under_test
        tested[label], warned[label] = rules.env_diff(
            a.run.env.get(a.target, {}), b.run.env.get(b.target, {}), under_test=patterns
        )
    notes = []
    fallback = verdicts[verdicts["threshold_source"] == "fallback"]
    if len(fallback):
        notes.append(
            f"{len(fallback)} metric(s) judged by the fallback threshold ±{fallback['threshold'].iloc[0] * 100:g}%: "
            "choose one from the MDE (suite `thresholds: {default: F}` or --threshold default=F; docs/methodology.md)"
        )
    for side in {id(s.run): s.run for p in pairs for s in p}.values():
        if side.meta.get("status") != "complete":
            notes.append(f"{side.dir.name} is {side.meta.get('status')!r}, not complete")
    expected = [
        line
        for a, b in pairs
        for side in (a, b)
        for line in expected_differences({side.label: side.run.env.get(side.target, {})}, [side.label])
    ]
    sides = {(id(s.run), s.target): s for p in pairs for s in p}  # a base side shared by several pairs: once
    left = [line for side in sides.values() for line in unfinished_lines(side)]
    return Comparison(pairs, verdicts, tested, warned, alpha, notes, list(dict.fromkeys(expected)), left)


def unfinished_lines(side: Side) -> list[str]:
    """One line per case of this side whose unfinished instances wrote samples that no statistic includes."""
    by_case = unfinished_by_case(side.run.unfinished)
    lines = []
    for r in by_case[by_case["target"] == side.target].to_dict("records"):
        n, m = int(r["samples"]), int(r["instances"])
        lines.append(
            f"{side.label} {r['workload']} {params_label(r['params'])}: {n} sample{'s' * (n != 1)} from "
            f"{m} unfinished instance{'s' * (m != 1)} left out of the statistics"
        )
    return lines


def _with_new_ci(verdicts: pd.DataFrame, frames: list[tuple[pd.DataFrame, pd.DataFrame]], seed: int) -> pd.DataFrame:
    """95 % bootstrap CI of the new side's median over instances (for github-action-benchmark's `range`)."""
    lows, highs = [], []
    new_all = pd.concat([b for _, b in frames], ignore_index=True)
    groups = {tuple(str(x) for x in k): g["median"].to_numpy(float) for k, g in new_all.groupby([*KEYS, "target"])}
    for rec in verdicts[[*KEYS, "target"]].itertuples(index=False):
        values = groups.get(tuple(str(x) for x in rec), np.array([]))
        lo, hi, _ = bootstrap_ci((values,), _median, rng=np.random.default_rng(seed), n_resamples=999)
        lows.append(lo)
        highs.append(hi)
    return verdicts.assign(new_ci_low=lows, new_ci_high=highs)


# ── renderers ──────────────────────────────────────────────────────────────────────────────────────────────
SYMBOL = {"regression": "✗ regression", "improvement": "✓ improvement", "equivalent": "≈ equivalent"}


def _change(row: Mapping[Any, Any]) -> str:
    r, lo, hi = row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"]
    if not math.isfinite(r):
        return "—"
    ci = f" [{(lo - 1) * 100:+.2f}, {(hi - 1) * 100:+.2f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{(r - 1) * 100:+.2f}%{ci}"


def _p(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.2g}"


def table_rows(c: Comparison) -> list[list[str]]:
    """Cells for the terminal and Markdown tables, in verdict order."""
    rows = []
    for r in c.verdicts.to_dict("records"):
        rows.append(
            [
                f"{r['workload']} {params_label(r['params'])}",
                f"{r['metric']} ({r['unit']}, {r['better']})",
                f"{r['base']} → {r['target']}" if r["base"] != r["target"] else str(r["target"]),
                f"{fmt_num(r['base_median'])} → {fmt_num(r['new_median'])}",
                _change(r),
                f"±{r['threshold'] * 100:g}% ({r['threshold_source']})",
                "—" if not math.isfinite(r["mde_pct"]) else f"{r['mde_pct']:.1f}%",
                _p(r["p_mwu_holm"]),
                _p(r["p_tost"]),
                SYMBOL.get(str(r["verdict"]), str(r["verdict"]))
                + (f" ({r['note']})" if r["note"] else "")
                + (" — stack differs" if r.get("stack") == DIFFERS else ""),
            ]
        )
    return rows


HEADERS = ["case", "metric", "targets", "median base → new", "change [95% CI]", "threshold (source)", "MDE",
           "p (MWU, Holm)", "p (TOST)", "verdict"]  # fmt: skip


def summary_line(c: Comparison) -> str:
    counts = c.counts()
    parts = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("regression", "improvement", "equivalent", "inconclusive"))
    head = "REGRESSION" if c.regressions else "no regression"
    return f"{head}: {parts} (alpha {c.alpha:g}, Holm over {len(c.verdicts)} metrics)"


def to_markdown(c: Comparison) -> str:
    """GitHub-flavoured Markdown, ready for $GITHUB_STEP_SUMMARY."""
    lines = ["## benchbed compare", "", f"**{summary_line(c)}**", ""]
    for note in c.notes:
        lines.append(f"> ⚠ {_md(note)}")
    for label in c.under_test:
        lines += [f"### Environment: {_md(label)}", ""]
        changes = c.under_test[label]
        if changes:
            lines += ["| field under test | base | new |", "|---|---|---|"]
            lines += [f"| {_md(e.key)} | {_md(e.base)} | {_md(e.new)} |" for e in changes]
        else:
            lines.append("No field under test differs.")
        for e in c.warnings[label]:
            lines.append(f"- ⚠ not comparable: {_md(e.key)} differs ({_md(e.base)} → {_md(e.new)})")
        lines.append("")
    for note in c.stack_notes:
        lines.append(f"- ⚠ not a boundary cost alone: {_md(note)}")
    for note in c.expected:
        lines.append(f"- expected difference: {_md(note)}")
    for note in c.unfinished:
        lines.append(f"- unfinished: {_md(note)}")
    if c.stack_notes or c.expected or c.unfinished:
        lines.append("")
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in table_rows(c)]
    lines += ["", "Verdict rules: docs/methodology.md (instances resampled; MWU + bootstrap CI; TOST ±threshold)."]
    return "\n".join(lines) + "\n"


def _md(text: object) -> str:
    return "∅" if text is None else md(text)


def to_junit(c: Comparison) -> str:
    """JUnit XML: one test case per metric; a regression is a failure, inconclusive is reported as passed."""
    suite = ET.Element(
        "testsuite", name="benchbed.compare", tests=str(len(c.verdicts)), failures=str(c.regressions), errors="0"
    )
    for r, cells in zip(c.verdicts.to_dict("records"), table_rows(c), strict=True):
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{r['workload']}[{params_label(r['params'])}]",
            name=f"{r['metric']} {r['base']}→{r['target']}",
            time="0",
        )
        detail = "; ".join(f"{h}: {v}" for h, v in zip(HEADERS, cells, strict=True))
        if r["verdict"] == "regression":
            failure = ET.SubElement(case, "failure", message=f"regression {_change(r)}", type="regression")
            failure.text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def to_gab(c: Comparison) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """github-action-benchmark's customBiggerIsBetter / customSmallerIsBetter entries (new side's medians)."""
    bigger: list[dict[str, Any]] = []
    smaller: list[dict[str, Any]] = []
    for r in c.verdicts.to_dict("records"):
        if not math.isfinite(r["new_median"]) or r["better"] not in ("higher", "lower"):
            continue
        entry: dict[str, Any] = {
            "name": f"{r['workload']} {params_label(r['params'])} {r['metric']} ({r['target']})",
            "unit": r["unit"],
            "value": float(r["new_median"]),
        }
        lo, hi = r["new_ci_low"], r["new_ci_high"]
        if math.isfinite(lo) and math.isfinite(hi):
            entry["range"] = f"± {fmt_num((hi - lo) / 2)}"
        entry["extra"] = f"{r['verdict']}; {_change(r)} vs {r['base']}; n={r['n_new']} instances"
        (bigger if r["better"] == "higher" else smaller).append(entry)
    return bigger, smaller


def write_outputs(c: Comparison, *, markdown: Path | None, junit: Path | None, gab_prefix: Path | None) -> list[Path]:
    """Each file all at once (`benchbed.fileio`); Markdown is appended: $GITHUB_STEP_SUMMARY collects several steps."""
    written = []
    if markdown is not None:
        written.append(write_atomic(markdown, to_markdown(c), append=True))
    if junit is not None:
        written.append(write_atomic(junit, to_junit(c)))
    if gab_prefix is not None:
        bigger, smaller = to_gab(c)
        for suffix, data in (("bigger", bigger), ("smaller", smaller)):
            path = gab_prefix.with_name(f"{gab_prefix.name}-{suffix}.json")
            written.append(write_atomic(path, json.dumps(data, indent=2) + "\n"))
    return written
