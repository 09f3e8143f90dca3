"""YAML with locations: plain data plus where each key and value was written.

PyYAML's `safe_load` forgets positions and keeps the last of two equal keys; a policy
loader needs both, so the tree is built from the composer's nodes instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from router.errors import PolicyError, PolicyIssue

__all__ = ["Location", "Path", "Source", "dotted", "read_source"]

Path = tuple[str | int, ...]
"""Keys and list indices from the top of the document down to one value."""

_POLICY_SHAPE = "expected a mapping with providers, targets and routes"


@dataclass(frozen=True, slots=True)
class Location:
    """A 1-based line and column."""

    line: int
    column: int

    @classmethod
    def of(cls, mark: yaml.Mark) -> Location:
        return cls(mark.line + 1, mark.column + 1)


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed document: `data` as `safe_load` would give it, with the places of its parts.

    `values[path]` is where the value at `path` starts; `keys[path]` is where the key that
    names it was written (mapping entries only). `issues` are problems that did not stop
    the parse, such as duplicate keys (the last one wins, as in `safe_load`).
    """

    data: dict[str, Any]
    values: Mapping[Path, Location]
    keys: Mapping[Path, Location]
    issues: tuple[PolicyIssue, ...] = ()


def read_source(text: str, filename: str) -> Source:
    """Parse `text`; raise `PolicyError` if it is not YAML or its top level is not a mapping."""
    try:
        return _read(text, filename)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Location.of(mark) if mark else Location(1, 1)
        problem = error.problem or "syntax error"
        # `str(error)` would quote source lines; next to a line and column the problem suffices.
        context = f" ({error.context})" if error.context else ""
        raise _fatal(filename, where, f"invalid YAML: {problem}{context}") from None
    except yaml.reader.ReaderError as error:
        # Raised before any parsing, so there is an offset but no mark.
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        message = f"invalid YAML: {error.reason} (character #x{error.character:04x})"
        raise _fatal(filename, Location(line, column), message) from None


def _read(text: str, filename: str) -> Source:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _fatal(filename, Location(1, 1), f"the policy is empty; {_POLICY_SHAPE}")
        if not isinstance(node, yaml.MappingNode):
            raise _fatal(
                filename, Location.of(node.start_mark), f"the top level is not a mapping; {_POLICY_SHAPE}"
            )
        builder = _Builder(loader, filename)
        data = builder.build(node, ())
        return Source(data, builder.values, builder.keys, tuple(builder.issues))
    finally:
        loader.dispose()


def _fatal(filename: str, where: Location, message: str) -> PolicyError:
    return PolicyError([PolicyIssue(filename, where.line, where.column, "", message)])


@dataclass
class _Builder:
    loader: yaml.SafeLoader
    filename: str
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)
    issues: list[PolicyIssue] = field(default_factory=list)
    _open: set[int] = field(default_factory=set)

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.values[path] = Location.of(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node)
        if id(node) in self._open:
            self._issue(node.start_mark, path, "an alias refers to a node that contains it")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        first_seen: dict[str, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node)
            if key in first_seen:
                self._issue(
                    key_node.start_mark,
                    (*path, key),
                    f"duplicate key {key!r} (first defined on line {first_seen[key].line + 1})",
                )
            else:
                first_seen[key] = key_node.start_mark
        # Resolves `<<: *anchor` merge keys in place; explicit keys come last, so they win.
        self.loader.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            self.keys[(*path, key)] = Location.of(key_node.start_mark)
            mapping[key] = self.build(value_node, (*path, key))
        return mapping

    def _key(self, node: yaml.Node) -> str:
        # Keys are names, so they stay text: YAML 1.1 would read `on:` (a retry field) as
        # `True:`, and `404:` as a number.
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        raise yaml.MarkedYAMLError(
            problem="a mapping key must be a plain value", problem_mark=node.start_mark
        )

    def _issue(self, mark: yaml.Mark, path: Path, message: str) -> None:
        where = Location.of(mark)
        self.issues.append(PolicyIssue(self.filename, where.line, where.column, dotted(path), message))


def dotted(path: Path) -> str:
    """`("routes", "chat", "targets", 1)` -> `routes.chat.targets[1]`."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
