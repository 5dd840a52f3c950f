"""Stack parity per (workload, params): same, differs (with files), unknown, or under test."""

from __future__ import annotations

import pandas as pd

from benchbed.stacks.parity import DIFFERS, SAME, UNDER_TEST, UNKNOWN, SideStacks, annotate, summary


def cases(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame([{"target": t, "workload": w, "params": {"n": 1}, "stack_digest": d} for t, w, d in rows])


ENV = {
    "a": {"stacks": {"d1": {"digest": "d1", "files": {"/usr/lib/libopenblas.so": "1"}}}},
    "b": {"stacks": {"d2": {"digest": "d2", "files": {"/usr/lib/libblas.so": "2"}}}},
}


def verdicts(*targets: str) -> pd.DataFrame:
    return pd.DataFrame([{"workload": "cpu.gemm", "params": '{"n":1}', "base": "a", "target": t} for t in targets])


def test_same_differs_unknown_and_accepted() -> None:
    c = cases([("a", "cpu.gemm", "d1"), ("b", "cpu.gemm", "d2"), ("c", "cpu.gemm", "d1"), ("d", "cpu.gemm", None)])
    a = SideStacks.of(c, ENV, "a")
    sides = {("a", t): (a, SideStacks.of(c, ENV, t)) for t in "bcd"}
    out = annotate(verdicts("b", "c", "d"), sides, accepted=False)
    assert list(out["stack"]) == [DIFFERS, SAME, UNKNOWN]
    assert "libopenblas.so" in out["stack_note"][0]
    assert "libblas.so" in out["stack_note"][0]
    assert list(annotate(verdicts("b"), sides, accepted=True)["stack"]) == [UNDER_TEST]


def test_instances_that_disagree_are_a_difference() -> None:
    c = cases([("a", "cpu.gemm", "d1"), ("a", "cpu.gemm", "d3"), ("c", "cpu.gemm", "d1")])
    state = annotate(
        verdicts("c"), {("a", "c"): (SideStacks.of(c, {}, "a"), SideStacks.of(c, {}, "c"))}, accepted=False
    )
    assert state["stack"][0] == DIFFERS
    assert "between instances of a" in state["stack_note"][0]


def test_summary_line() -> None:
    same = cases([("a", "cpu.gemm", "d1"), ("b", "cpu.gemm", "d1"), ("a", "util.noop", "d5"), ("b", "util.noop", "d5")])
    assert summary(same, ["a", "b"]).startswith("stack identical across a, b for every workload")
    other = cases([("a", "cpu.gemm", "d1"), ("b", "cpu.gemm", "d2")])
    assert summary(other, ["a", "b"]).startswith("cpu.gemm n=1: stacks differ")
    assert summary(pd.DataFrame({"target": ["a"]}), ["a"]).startswith("stack not recorded")
