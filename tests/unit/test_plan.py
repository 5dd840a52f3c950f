"""The plan is seeded, interleaved across targets and replayable."""

from __future__ import annotations

import pytest

from benchbed.errors import ConfigError
from benchbed.plan import make_plan
from benchbed.schema import Suite


def suite(**kw: object) -> Suite:
    base: dict[str, object] = {
        "name": "s",
        "baseline": "a",
        "defaults": {"instances": 3, "repetitions": 2},
        "workloads": [{"name": "cpu.gemm", "params": {"n": [64, 128]}}, {"name": "util.noop"}],
    }
    base.update(kw)
    return Suite.model_validate(base)


def test_same_seed_same_order_and_every_target_each_round() -> None:
    p1 = make_plan(suite(), ["a", "b", "c"], seed=7)
    p2 = make_plan(suite(), ["a", "b", "c"], seed=7)
    assert p1.cases == p2.cases
    assert len(p1.cases) == 3 * 3 * 3  # instances × (2 grid points + 1) × targets
    for i in range(0, len(p1.cases), 3):
        block = p1.cases[i : i + 3]
        assert sorted(c.target for c in block) == ["a", "b", "c"]
        assert len({(c.key, c.instance) for c in block}) == 1


def test_order_varies_with_seed_and_instances_come_round_robin() -> None:
    orders = {tuple(c.target for c in make_plan(suite(), ["a", "b", "c"], seed=s).cases) for s in range(5)}
    assert len(orders) > 1
    cases = make_plan(suite(), ["a", "b"], seed=1).cases
    assert [c.instance for c in cases] == sorted(c.instance for c in cases)


def test_only_repeat_and_unknown_names() -> None:
    plan = make_plan(suite(), ["a"], seed=1, only="util.*", instances=5)
    assert {c.workload for c in plan.cases} == {"util.noop"}
    assert len(plan.cases) == 5
    with pytest.raises(ConfigError, match="matches no workload"):
        make_plan(suite(), ["a"], only="gpu.*")
    with pytest.raises(ConfigError, match="baseline target 'a'"):
        make_plan(suite(), ["b"])
    with pytest.raises(ConfigError, match="unknown target"):
        make_plan(suite(targets=["a", "zz"]), ["a"])


def test_seed_from_suite_is_used() -> None:
    assert make_plan(suite(seed=99), ["a"]).seed == 99


def test_blocks_run_one_group_per_round_in_seeded_order() -> None:
    s = suite(blocks=[["vm"]])
    plan = make_plan(s, ["a", "b", "vm"], seed=5)
    per_round = 3 * 2 + 3  # (2 grid points + 1) × {a, b}, then × {vm}, or the other way round
    for r in range(3):
        chunk = [c.target for c in plan.cases[r * per_round : (r + 1) * per_round]]
        assert {c.instance for c in plan.cases[r * per_round : (r + 1) * per_round]} == {r}
        vm_at = [i for i, t in enumerate(chunk) if t == "vm"]
        assert vm_at in ([0, 1, 2], [6, 7, 8])  # contiguous: the VM never alternates with the host per case
    assert make_plan(s, ["a", "b", "vm"], seed=5).cases == plan.cases
    orders = {tuple(c.target for c in make_plan(s, ["a", "b", "vm"], seed=k).cases[:1]) for k in range(10)}
    assert len(orders) > 1
    with pytest.raises(ConfigError, match="more than one block"):
        make_plan(suite(blocks=[["a"], ["a"]]), ["a", "b"])
    with pytest.raises(ConfigError, match="block names target 'zz'"):
        make_plan(suite(blocks=[["zz"]]), ["a", "b"])


def test_no_blocks_keeps_the_per_case_interleaving() -> None:
    assert make_plan(suite(), ["a", "b"], seed=3).cases == make_plan(suite(blocks=[]), ["a", "b"], seed=3).cases


def test_target_instances_caps_one_target_and_names_only_known_targets() -> None:
    cases = make_plan(suite(target_instances={"c": 1}), ["a", "b", "c"], seed=3).cases
    per = {t: sum(1 for c in cases if c.target == t) for t in "abc"}
    assert per == {"a": 9, "b": 9, "c": 3}  # 3 cases × 3 instances; the capped VM-like target one each
    assert {c.instance for c in cases if c.target == "c"} == {0}
    assert len(make_plan(suite(target_instances={"vm": 1}), ["a", "b"], seed=3).cases) == 18  # vm not in this run
    with pytest.raises(ConfigError, match="target_instances names target"):  # the suite names its targets: a typo
        make_plan(suite(targets=["a", "b"], target_instances={"vm": 1}), ["a", "b"], seed=3)


def test_a_workloads_own_target_instances_override_the_suites_for_it_alone() -> None:
    work = [{"name": "cpu.gemm", "target_instances": {"c": 1}}, {"name": "util.noop"}]
    cases = make_plan(suite(target_instances={"c": 2}, workloads=work), ["a", "b", "c"], seed=3).cases
    per = {(c.workload, c.target): 0 for c in cases}
    for c in cases:
        per[(c.workload, c.target)] += 1
    assert per[("cpu.gemm", "c")] == 1  # its own cap
    assert per[("util.noop", "c")] == 2  # the suite's elsewhere
    assert per[("cpu.gemm", "a")] == per[("util.noop", "b")] == 3
    raised = suite(target_instances={"c": 1}, workloads=[{"name": "util.noop", "target_instances": {"c": 3}}])
    assert sum(1 for c in make_plan(raised, ["a", "c"], seed=3).cases if c.target == "c") == 3  # may raise it too
    with pytest.raises(ConfigError, match="target_instances names target"):
        make_plan(suite(targets=["a"], workloads=[{"name": "util.noop", "target_instances": {"vm": 1}}]), ["a"])


def test_settle_s_reaches_every_case_and_defaults_to_no_wait() -> None:
    assert {c.settle_s for c in make_plan(suite(), ["a", "b"], seed=1).cases} == {0.0}
    waits = suite(defaults={"instances": 2, "repetitions": 2, "settle_s": 3})
    assert {c.settle_s for c in make_plan(waits, ["a", "b"], seed=1).cases} == {3.0}
    with pytest.raises(ValueError, match="settle_s"):
        suite(defaults={"instances": 2, "settle_s": -1})


def test_hold_s_reaches_every_case_and_defaults_to_writing_each_sample_at_once() -> None:
    assert {c.hold_s for c in make_plan(suite(), ["a", "b"], seed=1).cases} == {0.0}
    held = suite(defaults={"instances": 2, "repetitions": 2, "hold_s": 1})
    assert {c.hold_s for c in make_plan(held, ["a", "b"], seed=1).cases} == {1.0}
    with pytest.raises(ValueError, match="hold_s"):
        suite(defaults={"instances": 2, "hold_s": -1})
