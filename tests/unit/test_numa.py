"""Host-buffer placement on the GPU's NUMA node, against a fake sysfs tree and a fake affinity syscall."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchbed.workloads import Context, load_builtins, numa
from tests.unit.fakegpu import FakeTorch, install

BUS = "0000:3b:00.0"


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two nodes (cpus 0-3 and 4-7); the GPU on node 1; affinity calls recorded instead of made."""
    for node, cpus in ((0, "0-3"), (1, "4-7")):
        d = tmp_path / f"devices/system/node/node{node}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpus + "\n")
    dev = tmp_path / "bus/pci/devices" / BUS
    dev.mkdir(parents=True)
    (dev / "numa_node").write_text("1\n")
    monkeypatch.setattr(numa, "SYS", tmp_path)
    state = {"cpus": set(range(8))}
    calls: list[set[int]] = []

    def setaff(pid: int, cpus: set[int]) -> None:
        calls.append(set(cpus))
        state["cpus"] = set(cpus)

    monkeypatch.setattr(numa.os, "sched_getaffinity", lambda pid: set(state["cpus"]), raising=False)
    monkeypatch.setattr(numa.os, "sched_setaffinity", setaff, raising=False)
    monkeypatch.setattr(numa, "CALLS", calls, raising=False)
    return tmp_path


def test_cpulist_round_trip() -> None:
    assert numa.parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert numa.format_cpulist({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"
    assert numa.parse_cpulist("") == set()


@pytest.mark.parametrize(("requested", "node", "cpus"), [("local", 1, "4-7"), ("remote", 0, "0-3")])
def test_place_sets_affinity_to_the_node_and_restores_it(sysfs: Path, requested: str, node: int, cpus: str) -> None:
    placement, restore = numa.place(BUS, requested)
    assert (placement.gpu_node, placement.cpu_node, placement.cpus, placement.note) == (1, node, cpus, "")
    restore()
    assert [numa.parse_cpulist(cpus), set(range(8))] == numa.CALLS  # type: ignore[attr-defined]


def test_unknown_node_and_single_node_are_recorded_not_guessed(sysfs: Path) -> None:
    (sysfs / "bus/pci/devices" / BUS / "numa_node").write_text("-1\n")  # a VM without guest NUMA
    placement, _ = numa.place(BUS, "local")
    assert placement.cpu_node is None
    assert "NUMA node is unknown" in placement.note
    (sysfs / "bus/pci/devices" / BUS / "numa_node").write_text("0\n")
    (sysfs / "devices/system/node/node1/cpulist").write_text("\n")  # one node with CPUs
    placement, _ = numa.place(BUS, "remote")
    assert "there is no remote node" in placement.note
    assert numa.CALLS == []  # type: ignore[attr-defined]


def test_cpuset_that_excludes_the_node_is_said(sysfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numa.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    placement, _ = numa.place(BUS, "local")
    assert placement.note == "no CPU of node 1 is allowed to this process (cpuset 0-1)"


@pytest.mark.parametrize("requested", ["local", "remote", "any"])
def test_h2d_allocates_after_placing_and_records_it(
    sysfs: Path, monkeypatch: pytest.MonkeyPatch, requested: str
) -> None:
    fake = FakeTorch("NVIDIA H100 PCIe", copy_gbs=50.0, bus=(0, 0x3B, 0))
    install(monkeypatch, fake)
    seen: list[set[int]] = []
    empty = fake.empty

    def empty_spy(*size: int, **kw: object) -> object:
        if kw.get("device", "cpu") == "cpu":
            seen.append(numa.os.sched_getaffinity(0))
        return empty(*size, **kw)  # type: ignore[arg-type]

    fake.empty = empty_spy  # type: ignore[method-assign]
    info = load_builtins()["gpu.h2d_bandwidth"]
    samples = list(info.fn(info.params(size_mb=16, numa=requested), Context(repetitions=2, warmup=0)))
    want = {"local": set(range(4, 8)), "remote": set(range(4)), "any": set(range(8))}[requested]
    assert seen == [want]  # the pinned buffer was allocated (and touched) on the chosen node's CPUs
    labels = samples[-1].labels
    assert (labels["numa"], labels["gpu_numa_node"]) == (requested, 1)
    assert labels["host_numa_node"] == {"local": 1, "remote": 0, "any": None}[requested]
    assert numa.os.sched_getaffinity(0) == set(range(8))  # restored after the workload


def test_bad_placement_is_rejected() -> None:
    with pytest.raises(ValueError, match="not one of local, remote, any"):
        load_builtins()["gpu.h2d_bandwidth"].params(numa="socket0")
