"""`benchbed demo`: what benchbed is for, out of the box.

The shipped `demo` suite runs on this host's plain process (`local`, the baseline) and on the same process in fresh
Linux namespaces (`ns`) — what every Linux machine has — so the first report already has ratios. A container
(`docker`, the CI test image) joins when a Docker engine answers and the image is there. Each choice is probed at
run time and said in one line; nothing here prints (the CLI does).
"""

from __future__ import annotations

import gc
import warnings
from dataclasses import dataclass, field

from benchbed.errors import BenchbedError
from benchbed.schema import AnyTarget
from benchbed.targets.docker import DockerTarget
from benchbed.targets.local import LocalTarget
from benchbed.targets.ns import NsTarget

SUITE = "demo"
IMAGE = "benchbed/test-python:latest"


@dataclass
class DemoTargets:
    specs: dict[str, AnyTarget] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def demo_targets(*, container: bool = True) -> DemoTargets:
    """local + ns (+ container): every target that works here, and one line on each that was added or left out."""
    found = DemoTargets({"local": LocalTarget.model_validate({"description": "this host, plain process"})})
    ns = NsTarget.model_validate({"kind": "ns", "description": "this host, fresh namespaces"})
    why, what = probe_ns(ns)
    if why is None:
        found.specs["ns"] = ns
        found.notes.append(f"ns: the same process in fresh namespaces ({what})")
    else:
        found.notes.append(f"ns left out: {why}")
    if not container:
        found.notes.append("container left out: --no-container")
        return found
    why = probe_docker(IMAGE)
    if why is None:
        found.specs["container"] = DockerTarget(
            kind="docker", image=IMAGE, pull="never", description="the CI test image, its own userland"
        )
        found.notes.append(f"container added: Docker engine up, image {IMAGE} present")
    else:
        found.notes.append(f"container left out: {why}")
    return found


def probe_ns(spec: NsTarget) -> tuple[str | None, str]:
    """(why not, None) or (None, what it is): one real instance brought up and torn down (~20 ms)."""
    from benchbed.targets.ns import NsProvisioner

    target = NsProvisioner("ns", spec, "probe")
    try:
        with target.provision():
            pass
    except BenchbedError as err:
        return str(err), ""
    info = target.describe().get("ns", {})
    return None, f"{info.get('tool', '?')}: {info.get('new', '?')}"


def probe_docker(image: str) -> str | None:
    """None when the engine answers and has `image`; otherwise why not, in a few words."""
    try:
        import docker.errors

        from benchbed.targets.dockerengine import client_for
    except ImportError:
        return "the docker package is not installed (pip install 'benchbed[docker]')"
    with warnings.catch_warnings():
        # docker-py leaves the socket of a failed version check to the garbage collector: drop it here, quietly
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = client_for(None, "container")
        except BenchbedError as err:
            why: str | None = str(err.args[0])
        else:
            why = None
        gc.collect()
    if why is not None:
        return why.removeprefix("container: ")
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return f"image {image} is not built (scripts/build-test-image builds it)"
    except (docker.errors.DockerException, OSError) as err:  # requests' errors are OSErrors
        return f"the Docker engine failed to answer ({_first_line(err)})"
    finally:
        client.close()
    return None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
