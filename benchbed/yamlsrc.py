"""YAML loading that remembers where every key came from, so config errors can say file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchbed.errors import ConfigError

Loc = tuple[str | int, ...]


class Located:
    """A parsed YAML document plus a map from key path to 1-based line number."""

    def __init__(self, path: Path, data: Any, lines: dict[Loc, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def line_of(self, loc: Loc) -> int | None:
        """Line of the deepest key on loc that the document has (pydantic adds union tags we skip)."""
        best = self.lines.get(())
        cur: Loc = ()
        for part in loc:
            nxt = (*cur, part)
            if nxt in self.lines:
                cur = nxt
                best = self.lines[nxt]
        return best

    def where(self, loc: Loc) -> str:
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)


def _build(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                raise ConfigError(f"{path}:{line}: mapping keys must be plain scalars")
            key = _scalar(key_node)
            if key in out:
                raise ConfigError(
                    f"{path}:{key_node.start_mark.line + 1}: duplicate key {key!r}",
                    hint="each key may appear once per mapping",
                )
            child = (*loc, key)
            lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), lines, path) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    return yaml.constructor.SafeConstructor().construct_object(node)


def load_yaml(path: Path) -> Located:
    """Parse one YAML file; syntax errors become ConfigError with the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: file not found", hint="check the path") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {err.problem}", hint="fix the syntax") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    lines: dict[Loc, int] = {}
    if node is None:
        return Located(path, {}, {(): 1})
    try:
        data = _build(node, (), lines, path)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML value: {err}") from err
    return Located(path, data, lines)
