"""Suite and targets files ▸ frozen pydantic models. Unknown keys are rejected; errors name file:line and key path."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from benchbed.errors import ConfigError
from benchbed.workloads import DIR_PARAMS, REGISTRY, load_builtins
from benchbed.workloads.base import WorkloadInfo, param_names
from benchbed.yamlsrc import Loc, Located, load_yaml

DATA_DIR = Path(__file__).resolve().parent / "data"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ── targets ────────────────────────────────────────────────────────────────────────────────────────────────
class TargetBase(Strict):
    python: str = Field("python3", description="Python interpreter inside the target that runs the agent")
    scratch_dir: str | None = Field(None, description="Where I/O workloads write; a private temp dir by default")
    description: str = ""


class LocalTarget(TargetBase):
    """This host, as a plain process: the bare-metal baseline."""

    kind: Literal["local"] = "local"


Namespace = Literal["user", "mount", "pid", "net", "ipc", "uts"]
ALL_NAMESPACES: tuple[Namespace, ...] = ("user", "mount", "pid", "net", "ipc", "uts")


class NsTarget(TargetBase):
    """This host's process in fresh Linux namespaces: a container runtime's isolation without an engine or an
    image, on the same userland as `local`, so the ratio to `local` is the boundary's alone."""

    kind: Literal["ns"]
    namespaces: list[Namespace] = Field(
        default_factory=lambda: list(ALL_NAMESPACES),
        min_length=1,
        description="Namespaces created per instance; `user` is added when not root (needed to create the others)",
    )
    tool: Literal["auto", "unshare", "bwrap"] = Field(
        "auto", description="unshare (util-linux) or bubblewrap; auto: bwrap when installed, else unshare"
    )

    @field_validator("namespaces")
    @classmethod
    def _unique(cls, value: list[Namespace]) -> list[Namespace]:
        if len(set(value)) != len(value):
            raise ValueError(f"namespaces {value} lists one twice")
        return value

    @model_validator(mode="after")
    def _bwrap_mounts(self) -> NsTarget:
        if self.tool == "bwrap" and "mount" not in self.namespaces:
            raise ValueError("bwrap always creates a mount namespace: list `mount`, or use tool: unshare")
        return self


class SshFields(TargetBase):
    """Everything an SSH target says except which host: shared by targets and group templates."""

    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, description="Login user; the local user name when absent")
    key: str | None = Field(None, description="Private key file; the SSH agent and ~/.ssh/id_* are used when absent")
    known_hosts: str = Field("~/.ssh/known_hosts", description="Host keys are always verified against this file")
    accept_new_host_key: bool = Field(
        False, description="Trust an unknown host key once and append it to known_hosts (never by default)"
    )
    workdir: str | None = Field(
        None, description="Remote parent of the private per-instance workdir (mode 700); $TMPDIR or /tmp if absent"
    )
    proxy_jump: str | None = Field(
        None, pattern=r"^([^@\s]+@)?[^@\s:]+(:\d+)?$", description="[user@]host[:port] to tunnel through"
    )
    sudo: bool = Field(False, description="Run the agent with `sudo -n` (workloads that drop page caches)")
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP connect, SSH banner, auth, opening a channel")
    command_timeout_s: float = Field(
        120.0, gt=0, description="Limit for benchbed's own remote commands (probe, cleanup); cases use timeout_s"
    )


class SshTarget(SshFields):
    """A bare-metal host reached over SSH (paramiko)."""

    kind: Literal["ssh"]
    host: str = Field(min_length=1)


class DockerTarget(TargetBase):
    """A fresh container per instance, through the Docker SDK: the container boundary under test."""

    kind: Literal["docker"]
    image: str = Field(min_length=1)
    pull: Literal["never", "missing", "always"] = "missing"
    gpus: Literal["all"] | Annotated[int, Field(ge=1)] | list[str] | None = Field(
        None, description="Docker device requests: `all`, a count, or device ids/UUIDs"
    )
    runtime: str | None = Field(None, description="OCI runtime (runc, nvidia, runsc, ...): the boundary compared")
    cpus: float | None = Field(None, gt=0, description="CPU limit (NanoCpus)")
    memory: str | None = Field(None, pattern=r"^\d+[bkmgBKMG]?$", description="Memory limit, e.g. 4g")
    shm_size: str | None = Field(None, pattern=r"^\d+[bkmgBKMG]?$")
    network: str = Field("none", description="`none` (default), `host`, or a named Docker network")
    volumes: list[str] = Field(default_factory=list, description="host:container[:ro|rw] binds (models, scratch)")
    env: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    privileged: bool = Field(False, description="Never by default")
    docker_host: str | None = Field(None, description="Engine URL; the local socket (or $DOCKER_HOST) if absent")
    workdir: str = Field("/tmp/benchbed", description="Directory inside the container for the agent")
    start_timeout_s: float = Field(60.0, gt=0)

    @field_validator("volumes")
    @classmethod
    def _binds(cls, value: list[str]) -> list[str]:
        for bind in value:
            parts = bind.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise ValueError(f"volume {bind!r} must be host:/container[:ro|rw]")
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"volume {bind!r}: mode must be ro or rw")
        return value


class VmSsh(Strict):
    """How benchbed reaches a guest: the same paramiko session as `ssh`, pointed at the VM."""

    user: str = "root"
    key: str | None = Field(None, description="Private key for the guest; the SSH agent and ~/.ssh/id_* if absent")
    host_key: str | None = Field(
        None, description="The guest's public host key file: pinned for the forwarded port (build-vm-image makes one)"
    )
    accept_new_host_key: bool = Field(
        False, description="Without host_key: trust the key a fresh guest offers (kept in a per-instance file)"
    )
    reach: Literal["port_forward", "lease"] = Field(
        "port_forward",
        description="port_forward: QEMU user-mode hostfwd on 127.0.0.1; lease: the guest's address on `network`",
    )
    host_port: int | None = Field(None, ge=1, le=65535, description="Forwarded port; a free one if absent")
    network: str = Field("default", description="libvirt network for reach: lease")
    port: int = Field(22, ge=1, le=65535, description="sshd port inside the guest")
    workdir: str | None = None
    sudo: bool = False
    connect_timeout_s: float = Field(10.0, gt=0)
    command_timeout_s: float = Field(120.0, gt=0)


class LibvirtTarget(TargetBase):
    """A fresh transient VM per instance, booted from a copy-on-write overlay of `image` (never written)."""

    kind: Literal["libvirt"]
    uri: str = Field("qemu:///system", description="libvirt connection URI (qemu+ssh://host/system for a remote one)")
    image: str = Field(min_length=1, description="Base disk (raw or qcow2); each instance gets its own overlay")
    kernel: str | None = Field(None, description="Direct kernel boot (with initrd and cmdline)")
    initrd: str | None = None
    cmdline: str | None = None
    vcpus: int = Field(2, ge=1)
    memory: int = Field(2048, ge=64, description="MiB")
    cpu_mode: Literal["host-passthrough", "host-model", "maximum", "custom"] = "host-passthrough"
    hugepages: bool = False
    vcpu_pinning: list[str] | None = Field(None, description="Host cpuset per vCPU, e.g. ['2', '3'] or ['2-3', '6']")
    virt_type: Literal["kvm", "qemu"] = Field("kvm", description="qemu = software emulation: never representative")
    machine: str = "q35"
    template: str | None = Field(None, description="Jinja2 domain XML; the shipped targets/vm/domain.xml.j2 if absent")
    gpus: list[Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")]] = Field(
        default_factory=list, description="PCI addresses passed through (VFIO); the IOMMU group's other functions too"
    )
    mdevs: list[Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{36}$")]] = Field(
        default_factory=list, description="mdev UUIDs (vGPU slices)"
    )
    overlay_dir: str | None = Field(None, description="Where overlays go; /var/lib/benchbed/overlays as root")
    ssh: VmSsh = Field(default_factory=lambda: VmSsh())
    boot_timeout_s: float = Field(300.0, gt=0, description="From start until the guest's sshd answers")


AnyTarget = LocalTarget | SshTarget | DockerTarget | LibvirtTarget | NsTarget
TargetSpec = Annotated[AnyTarget, Field(discriminator="kind")]


class SshTemplate(SshFields):
    """An SSH target whose host the group fills in (a `host:` written here is a placeholder, replaced)."""

    kind: Literal["ssh"] = "ssh"
    host: str | None = None


class TargetGroup(Strict):
    """Many hosts that share one definition: `hosts: [gpu01, gpu02]` expands to one target per host, named
    after it (so host names must be valid target names)."""

    hosts: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(min_length=1)
    template: SshTemplate = Field(default_factory=lambda: SshTemplate.model_validate({}))


class TargetsFile(Strict):
    targets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], TargetSpec]
    groups: dict[Annotated[str, Field(pattern=NAME_PATTERN)], TargetGroup] = Field(default_factory=dict)

    def expanded(self) -> dict[str, AnyTarget]:
        out: dict[str, AnyTarget] = dict(self.targets)
        for group in self.groups.values():
            for host in group.hosts:
                if host in out:
                    raise ValueError(f"group host {host!r} clashes with a target of the same name")
                out[host] = SshTarget(**{**group.template.model_dump(), "host": host})
        return out


# ── suites ─────────────────────────────────────────────────────────────────────────────────────────────────
Scalar = int | float | str | bool


Instances = Annotated[int, Field(ge=1, le=1000)] | Literal["auto"]
# With N + N instances an exact two-sided MWU cannot go below 2/C(2N, N): 0.10 at 3 + 3, 0.029 at 4 + 4 (one metric
# only), 0.0079 at 5 + 5 (Holm over up to 6 metrics). 5 is the least that lets a multi-metric case reach a verdict.
MIN_INSTANCES = 5


class Repeats(Strict):
    instances: Instances = Field(
        "auto",
        union_mode="left_to_right",
        description="Fresh processes/containers/VMs per target and case; `auto`: chosen per case from a pilot's noise",
    )
    pilot_instances: int = Field(4, ge=2, le=100, description="`auto`: baseline instances in the pilot (they count)")
    min_instances: int = Field(MIN_INSTANCES, ge=2, le=1000, description="`auto`: fewest instances per target")
    max_instances: int = Field(20, ge=2, le=1000, description="`auto`: most instances per target (then MDE is shown)")
    repetitions: int = Field(5, ge=1, le=100000, description="Measured samples per instance")
    warmup: int = Field(1, ge=0, le=10000, description="Unreported-in-stats warm-up samples per instance")
    timeout_s: float = Field(600.0, gt=0, description="Wall-clock limit for one instance")

    @model_validator(mode="after")
    def _bounds(self) -> Repeats:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances {self.min_instances} > max_instances {self.max_instances}")
        return self


class WorkloadEntry(Strict):
    name: str
    params: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    instances: Instances | None = Field(None, union_mode="left_to_right")
    repetitions: int | None = Field(None, ge=1, le=100000)
    warmup: int | None = Field(None, ge=0, le=10000)
    timeout_s: float | None = Field(None, gt=0)

    def grid(self) -> list[dict[str, Scalar]]:
        """Lists expand to a cartesian grid, in file order."""
        keys = list(self.params)
        values = [v if isinstance(v, list) else [v] for v in self.params.values()]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


class Suite(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    baseline: str = "local"
    targets: list[str] | None = Field(None, description="Target names to run on; all in the targets file if absent")
    seed: int | None = Field(None, description="Seed for the interleaving order; random and recorded if absent")
    defaults: Repeats = Field(default_factory=lambda: Repeats())
    modules: list[str] = Field(default_factory=list, description="Custom workload modules, relative to this file")
    blocks: list[list[str]] = Field(
        default_factory=list,
        description="Targets that cannot run alongside the others (a VM taking the GPU by passthrough): each list "
        "is a block; every round runs one block's cases, then the next's, in seeded order. Unlisted targets form "
        "one more block.",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Smallest relative change that matters, by glob on workload or workload:metric "
        "(e.g. {gpu.gemm: 0.01, 'io.*': 0.03}); used by `benchbed compare`",
    )
    workloads: list[WorkloadEntry] = Field(min_length=1)

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for pattern, fraction in value.items():
            if not 0 < fraction < 1:
                raise ValueError(f"threshold {pattern!r}: {fraction} is not a fraction in (0, 1)")
        return value


DEFAULT_TARGETS = TargetsFile(targets={"local": LocalTarget.model_validate({})})


# ── loading ────────────────────────────────────────────────────────────────────────────────────────────────
def _fmt_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


KINDS = ("local", "ssh", "docker", "libvirt", "ns")
UNION_TAGS = ("constrained-int", "literal['auto']")  # `instances: int | auto`


def _strip_union_tags(doc: Located, loc: Loc) -> Loc:
    """pydantic puts the discriminator value into loc (targets.x.ssh.port); users never wrote it."""
    out: Loc = ()
    for part in loc:
        if (part in KINDS or part in UNION_TAGS) and (*out, part) not in doc.lines:
            continue
        out = (*out, part)
    return out


def _validation_error(doc: Located, err: ValidationError) -> ConfigError:
    errors = err.errors()
    first = errors[0]
    loc = _strip_union_tags(doc, tuple(first["loc"]))
    msg = first["msg"]
    kind = first["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    elif kind == "union_tag_invalid":
        ctx = first.get("ctx", {})
        loc = (*loc, "kind")
        msg = f"unknown kind {ctx.get('tag')!r} (known: {ctx.get('expected_tags')})"
    elif loc and loc[-1] == "[key]":
        loc = loc[:-1]
        msg = f"invalid name {loc[-1]!r}: {_lower1(msg)}"
    elif "input" in first and kind != "missing":
        msg += f" (got {first['input']!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{doc.where(loc)}: {_fmt_loc(loc)}: {msg}{more}", hint="see `benchbed schema`")


def load_targets(path: Path) -> dict[str, AnyTarget]:
    doc = load_yaml(path)
    try:
        parsed = TargetsFile.model_validate(doc.data)
    except ValidationError as err:
        raise _validation_error(doc, err) from err
    try:
        return parsed.expanded()
    except ValueError as err:
        raise ConfigError(f"{doc.where(('groups',))}: {err}") from err


_LOADED_MODULES: dict[Path, str] = {}


def import_user_module(path: Path) -> None:
    """Import a custom workload module once per process; its @workload decorators register it."""
    path = path.resolve()
    if path in _LOADED_MODULES:
        return
    name = f"benchbed_user.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not an importable Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ConfigError(f"{path}: custom workload module failed to import: {err}") from err
    _LOADED_MODULES[path] = name


def check_params(info: WorkloadInfo, params: dict[str, Scalar]) -> dict[str, Any]:
    """Unknown parameter names are errors; values are coerced to the dataclass field types."""
    known = param_names(info)
    for key in params:
        if key not in known:
            raise ValueError(f"unknown parameter {key!r} for {info.name} (known: {', '.join(known) or 'none'})")
    obj = TypeAdapter(info.params).validate_python(params)
    return {k: getattr(obj, k) for k in params}


class LoadedSuite(BaseModel):
    """A validated suite plus where it came from (custom modules resolved to absolute paths)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    suite: Suite
    path: Path
    source_text: str
    module_paths: list[Path]
    bundles: dict[str, Path] = Field(default_factory=dict, description="agent archive folder → directory shipped")


def resolve_suite_path(arg: str | None) -> Path:
    """A path, or the name of a shipped suite (`quick`); the shipped copy works outside the repo too."""
    if arg is None:
        local = Path("workloads/quick.yaml")
        return local if local.is_file() else DATA_DIR / "quick.yaml"
    path = Path(arg)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in arg:
        return path
    shipped = DATA_DIR / f"{arg}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in DATA_DIR.glob("*.yaml")))
    raise ConfigError(f"suite {arg!r}: no such file and no shipped suite of that name", hint=f"shipped: {known}")


def load_suite(path: Path) -> LoadedSuite:
    doc = load_yaml(path)
    try:
        suite = Suite.model_validate(doc.data)
    except ValidationError as err:
        raise _validation_error(doc, err) from err
    load_builtins()
    modules = []
    for i, rel in enumerate(suite.modules):
        mod = (path.parent / rel).resolve()
        if not mod.is_file():
            raise ConfigError(f"{doc.where(('modules', i))}: modules[{i}]: {rel!r} not found next to the suite")
        import_user_module(mod)
        modules.append(mod)
    for i, entry in enumerate(suite.workloads):
        info = REGISTRY.get(entry.name)
        if info is None:
            raise ConfigError(
                f"{doc.where(('workloads', i, 'name'))}: workloads[{i}].name: unknown workload {entry.name!r}",
                hint="`benchbed workloads list` shows the known ones",
            )
        for point in entry.grid():
            try:
                check_params(info, point)
            except (ValueError, ValidationError) as err:  # ValidationError is a ValueError: test it first
                text = _pyd_msg(err) if isinstance(err, ValidationError) else str(err)
                loc = ("workloads", i, "params")
                raise ConfigError(f"{doc.where(loc)}: workloads[{i}].params: {text}") from err
    bundles = _bundles(doc, path, suite)
    return LoadedSuite(
        suite=suite,
        path=path,
        source_text=path.read_text(encoding="utf-8"),
        module_paths=modules,
        bundles=bundles,
    )


def _bundles(doc: Located, path: Path, suite: Suite) -> dict[str, Path]:
    """Directory parameters (DIR_PARAMS, e.g. the `pytest` workload's `path`), resolved relative to the suite file
    and checked here, so a typo is a config error with file:line rather than a failed case in every target."""
    from benchbed.agent.build import bundle_files
    from benchbed.workloads.pytest_bench import bundle_name

    out: dict[str, Path] = {}
    for i, entry in enumerate(suite.workloads):
        for key in DIR_PARAMS.get(entry.name, ()):
            for point in entry.grid():
                rel = str(point.get(key, ""))
                where = f"{doc.where(('workloads', i, 'params', key))}: workloads[{i}].params.{key}"
                directory = (path.parent / rel).resolve()
                if not rel or not directory.is_dir():
                    raise ConfigError(f"{where}: {rel!r} is not a directory (paths are relative to {path})")
                try:
                    bundle_files(directory)
                except (OSError, ValueError) as err:
                    raise ConfigError(f"{where}: {err}") from err
                out[bundle_name(rel)] = directory
    return out


def _lower1(text: str) -> str:
    return text[:1].lower() + text[1:]


def _pyd_msg(err: ValidationError) -> str:
    e = err.errors()[0]
    return f"{_fmt_loc(tuple(e['loc']))}: {_lower1(e['msg'])} (got {e.get('input')!r})"


def json_schemas() -> dict[str, Any]:
    return {"suite": Suite.model_json_schema(), "targets": TargetsFile.model_json_schema()}
