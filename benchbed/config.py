"""Loading suite and targets files into the models of `benchbed.schema`: unknown keys are rejected, and every error
names file:line and key path (exit code 2). Also resolves a suite's custom modules and bundled directories."""

from __future__ import annotations

import importlib.util
import posixpath
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from benchbed.errors import ConfigError
from benchbed.schema import AnyTarget, Scalar, Suite, TargetsFile
from benchbed.targets.registry import kinds
from benchbed.workloads import DIR_PARAMS, REGISTRY, load_builtins
from benchbed.workloads.base import WorkloadInfo, param_names
from benchbed.yamlsrc import Loc, Located, load_yaml

DATA_DIR = Path(__file__).resolve().parent / "data"


# ── loading ────────────────────────────────────────────────────────────────────────────────────────────────
def _fmt_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


UNION_TAGS = ("constrained-int", "literal['auto']")  # `instances: int | auto`


def _strip_union_tags(doc: Located, loc: Loc) -> Loc:
    """pydantic puts the discriminator value into loc (targets.x.ssh.port); users never wrote it."""
    out: Loc = ()
    for part in loc:
        if (part in kinds() or part in UNION_TAGS) and (*out, part) not in doc.lines:
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
    from benchbed.workloads.pytest_bench import bundle_name, split_path

    out: dict[str, Path] = {}
    for i, entry in enumerate(suite.workloads):
        for key in DIR_PARAMS.get(entry.name, ()):
            for point in entry.grid():
                given = str(point.get(key, ""))
                where = f"{doc.where(('workloads', i, 'params', key))}: workloads[{i}].params.{key}"
                rel, patterns = split_path(given, str(point.get("files", "")))
                directory = (path.parent / rel).resolve()
                if not given or not directory.is_dir():
                    raise ConfigError(f"{where}: {rel!r} is not a directory (paths are relative to {path})")
                for pattern in patterns:
                    if posixpath.isabs(pattern) or ".." in pattern.split("/"):
                        raise ConfigError(f"{where}: {pattern!r} must name files inside {rel!r}")
                    if not any(m.is_file() for m in directory.glob(pattern)):
                        raise ConfigError(f"{where}: {pattern!r} matches no file in {directory}")
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
