"""Runtime as an axis (one target per runtime), the boundary classes, and the runtime error lines (no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from benchbed import boundary
from benchbed.errors import ConfigError, ProvisionError
from benchbed.plan import make_plan, select
from benchbed.schema import Suite, TargetsFile
from benchbed.targets.base import TargetImpl
from benchbed.targets.registry import kind


def targets(**extra: Any) -> dict[str, Any]:
    box = {"kind": "docker", "image": "img", "runtime": ["runc", "runsc"], **extra}
    return TargetsFile.model_validate({"targets": {"local": {"kind": "local"}, "box": box}}).expanded()


def suite(**kw: Any) -> Suite:
    return Suite.model_validate(
        {"name": "s", "baseline": "local", "defaults": {"instances": 2}, "workloads": [{"name": "util.noop"}], **kw}
    )


def test_a_runtime_list_is_one_target_per_runtime() -> None:
    specs = targets(cpus=1)
    assert list(specs) == ["local", "box@runc", "box@runsc"]
    assert specs["box@runc"].oci_runtime == "runc"  # type: ignore[attr-defined]
    assert specs["box@runsc"].oci_runtime == "runsc"  # type: ignore[attr-defined]
    assert specs["box@runsc"].cpus == 1  # type: ignore[attr-defined]
    single = TargetsFile.model_validate({"targets": {"b": {"kind": "podman", "image": "i", "runtime": "runc"}}})
    assert list(single.expanded()) == ["b"]


@pytest.mark.parametrize("runtime", [[], ["runc", "runc"], ["bad name"]])
def test_bad_runtime_lists_are_refused(runtime: list[str]) -> None:
    with pytest.raises(ValueError, match="runtime"):
        targets(runtime=runtime)


def test_a_suite_naming_the_target_gets_every_runtime_interleaved() -> None:
    available = list(targets())
    assert select(["box"], available) == ["box@runc", "box@runsc"]
    assert select(["box@runsc", "local"], available) == ["box@runsc", "local"]
    plan = make_plan(suite(targets=["local", "box"], target_instances={"box": 1}), available, seed=3)
    assert plan.targets == ["local", "box@runc", "box@runsc"]
    assert sorted(c.target for c in plan.cases) == ["box@runc", "box@runsc", "local", "local"]
    with pytest.raises(ConfigError, match="unknown target"):
        make_plan(suite(targets=["local", "crate"]), available)


def test_boundary_classes_put_the_spectrum_in_order() -> None:
    specs = targets()
    docker = kind("docker")
    assert docker.boundary(specs["box@runc"]) == boundary.CONTAINER
    assert docker.boundary(specs["box@runsc"]) == boundary.SANDBOXED
    assert kind("local").boundary(specs["local"]) == boundary.BARE_METAL
    assert boundary.runtime_class("kata-fc") == boundary.SANDBOXED
    assert boundary.runtime_class("io.containerd.kata.v2") == boundary.SANDBOXED
    assert boundary.runtime_class("nvidia") == boundary.CONTAINER
    assert boundary.runtime_class(None) == boundary.CONTAINER
    ranks = [boundary.rank(b) for b in ("bare metal", "container runtimes", "sandboxed runtimes", "VMs", "?")]
    assert ranks == sorted(ranks)


class FakeEngine:
    def __init__(self, runtimes: dict[str, Any]) -> None:
        self.runtimes = runtimes

    def info(self) -> dict[str, Any]:
        return {"Runtimes": self.runtimes, "DefaultRuntime": "runc"}

    def version(self) -> dict[str, Any]:
        return {"Components": [{"Name": "runc", "Version": "1.1.5"}]}


def test_unknown_runtime_and_gvisor_network_are_one_line_each() -> None:
    pytest.importorskip("docker")
    import docker.errors

    from benchbed.targets.dockerargs import start_error
    from benchbed.targets.dockerruntime import check_known, runtime_facts

    spec = targets()["box@runsc"]
    target = TargetImpl("box@runsc", spec, "r")
    with pytest.raises(ProvisionError) as err:
        check_known(target, "nosuch", {"runc": {}, "runsc": {}}, "daemon.json")
    assert "runtime 'nosuch' is not registered with the engine (registered: runc, runsc)" in str(err.value)
    check_known(target, "runsc", {"runc": {}, "runsc": {}}, "daemon.json")  # known: no error

    refusal = docker.errors.APIError(
        "500", explanation="OCI runtime create failed: cannot run with network enabled in root network namespace"
    )
    line = start_error(target, spec, refusal)  # type: ignore[arg-type]
    assert "refuses to start with networking" in str(line)
    assert "--network=none" in (line.hint or "")

    engine = FakeEngine({"runsc": {"path": "/nonexistent/runsc", "runtimeArgs": ["--network=none"]}})
    facts = runtime_facts(engine, "runsc", local_engine=True)
    assert facts == {
        "name": "runsc",
        "default": False,
        "path": "/nonexistent/runsc",
        "args": ["--network=none"],
        "version": None,
        "sandboxed": True,
    }
    assert runtime_facts(engine, None, local_engine=False)["version"] == "1.1.5"  # the default runtime, from the engine


def test_podman_ulimits_default_to_what_its_process_may_grant() -> None:
    pytest.importorskip("docker")
    import resource

    from benchbed.targets.podmanengine import host_ulimits, ulimit_args

    limits = host_ulimits()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert limits["nofile"] == ("-1:-1" if hard == resource.RLIM_INFINITY else f"{hard}:{hard}")
    assert set(limits) == {"nofile", "nproc"}
    (arg,) = ulimit_args({"nofile": "1024:2048"})
    assert (arg.name, arg.soft, arg.hard) == ("nofile", 1024, 2048)
    with pytest.raises(ValueError, match="soft\\[:hard\\]"):
        TargetsFile.model_validate({"targets": {"p": {"kind": "podman", "image": "i", "ulimits": {"nofile": "lots"}}}})


def test_podman_runtime_flags_are_per_runtime_and_need_the_private_service() -> None:
    spec = TargetsFile.model_validate(
        {
            "targets": {
                "p": {
                    "kind": "podman",
                    "image": "i",
                    "runtime": "runsc",
                    "runtime_flags": {"runsc": ["--network=none", "debug"]},
                }
            }
        }
    ).targets["p"]
    assert spec.runtime_flags == {"runsc": ["network=none", "debug"]}  # type: ignore[union-attr]  # podman adds --
    with pytest.raises(ValueError, match="runtime_flags are passed to the private podman service"):
        TargetsFile.model_validate(
            {
                "targets": {
                    "p": {"kind": "podman", "image": "i", "podman_host": "unix:///x", "runtime_flags": {"runsc": ["a"]}}
                }
            }
        )
    with pytest.raises(ValueError, match="runtime_flags for runsc, which `runtime` does not name"):
        TargetsFile.model_validate(
            {"targets": {"p": {"kind": "podman", "image": "i", "runtime": "runc", "runtime_flags": {"runsc": ["a"]}}}}
        )
    with pytest.raises(ValueError, match="an empty flag"):
        TargetsFile.model_validate(
            {"targets": {"p": {"kind": "podman", "image": "i", "runtime": "runsc", "runtime_flags": {"runsc": ["--"]}}}}
        )
