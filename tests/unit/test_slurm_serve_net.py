"""serve.latency's across path on a slurm target, without a cluster: the node's address from `scontrol show node`,
when a container bundle hides the port, and what the session tells the agent and the controller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchbed.errors import ProvisionError
from benchbed.stacks.rootfs import Rootfs
from benchbed.targets import slurmcli, slurmnet, slurmoci
from benchbed.targets.slurm import SlurmTarget
from benchbed.targets.slurmjob import SlurmProvisioner, SlurmSession

NODE = (
    "NodeName=vm-2 Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=1 CPUTot=1 CPULoad=1.45 "
    "AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:1 NodeAddr=10.3.0.12 NodeHostName=vm Port=6819 "
    "Version=22.05.8 OS=Linux 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=12052 State=IDLE "
    "Partitions=debug CfgTRES=cpu=1,mem=12052M,billing=1 AllocTRES= CapWatts=n/a"
)


def test_the_node_address_is_its_node_addr_or_its_name() -> None:
    assert slurmcli.node_address(NODE) == "10.3.0.12"  # parsed only: no test connects to it
    assert slurmcli.node_address("NodeName=gpu7 Arch=x86_64 NodeAddr=gpu7.ib State=IDLE") == "gpu7.ib"
    assert slurmcli.node_address("NodeName=gpu7 Arch=x86_64 State=IDLE") == "gpu7"  # no NodeAddr: the name
    assert slurmcli.node_address("") is None


def write_bundle(path: Path, namespaces: list[dict[str, str]]) -> str:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"linux": {"namespaces": namespaces}}))
    return str(path)


def test_a_bundle_with_a_network_namespace_of_its_own_hides_the_port(tmp_path: Path) -> None:
    runc_default = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]  # what `runc spec` writes
    assert slurmnet.own_network(write_bundle(tmp_path / "own", runc_default)) is True
    joined = [{"type": "network", "path": "/proc/1/ns/net"}]  # joining the host's: the node's network
    assert slurmnet.own_network(write_bundle(tmp_path / "joined", joined)) is False
    assert slurmnet.own_network(str(tmp_path / "nowhere")) is None  # only the nodes see it: assume the node's
    ours = slurmoci.config(Rootfs("img", "sha256:ab", tmp_path / "rootfs", 0.0), ["/tmp"])
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "config.json").write_text(json.dumps(ours))
    assert slurmnet.own_network(str(tmp_path / "stack")) is False  # the stack's bundle shares the node's network


def test_addresses_are_looked_up_once_per_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked: list[str] = []

    def fake(node: str, *, timeout: float) -> str:
        asked.append(node)
        if node == "gone":
            raise ProvisionError("scontrol show node gone gave no NodeAddr: Node gone not found")
        return "127.0.0.1"

    monkeypatch.setattr(slurmcli, "node_addr", fake)
    book = slurmnet.NodeAddresses(timeout=5)
    assert book.serve_net("vm-1", None) == {"bind": "127.0.0.1", "port": 0}
    assert book.serve_net("vm-1", None) == {"bind": "127.0.0.1", "port": 0}
    assert asked == ["vm-1"]
    lost = book.serve_net("gone", None)
    assert lost["port"] is None
    assert "Node gone not found" in lost["why"]
    sealed = book.serve_net("vm-1", write_bundle(tmp_path / "b", [{"type": "network"}]))
    assert sealed["port"] is None
    assert "its own network namespace" in sealed["why"]
    assert book.serve_net(None, None)["port"] is None


def test_the_session_binds_and_is_reached_at_the_node_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurmcli, "node_addr", lambda node, *, timeout: {"n1": "127.0.0.1"}[node])
    owner = SlurmProvisioner("box", SlurmTarget(kind="slurm"), "r1")
    session = SlurmSession(owner, "42", "/tmp/w", "n1")
    assert session.serve_net() == {"bind": "127.0.0.1", "port": 0}
    with session.endpoint(8123) as where:
        assert where is not None
        assert (where.host, where.port, where.via) == ("127.0.0.1", 8123, "node-address")
    fixed = SlurmProvisioner("box", SlurmTarget(kind="slurm", serve_port=8700), "r1")  # a port a firewall opens
    assert SlurmSession(fixed, "44", "/tmp/w", "n1").serve_net() == {"bind": "127.0.0.1", "port": 8700}
    unknown = SlurmSession(owner, "43", "/tmp/w")  # no node recorded: no port, and no endpoint
    assert unknown.serve_net()["port"] is None
    with unknown.endpoint(8123) as where:
        assert where is None
