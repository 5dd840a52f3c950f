"""The plan is seeded, interleaved across targets and replayable."""

from __future__ import annotations

import pytest

from benchbed.config import Suite
from benchbed.errors import ConfigError
from benchbed.plan import make_plan


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
