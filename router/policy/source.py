"""YAML with locations: plain data plus where each key and value was written.

PyYAML's `safe_load` forgets positions and keeps the last of two equal keys; a policy
loader needs both, so the tree is built from the composer's nodes instead.

A document is bounded before anything is built from it: its size, its nesting and what its
aliases expand to (a few lines of anchors can stand for billions of values), so that a
hostile file costs a located error in a fraction of a second, not memory and minutes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from router.errors import PolicyError, PolicyIssue

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "Location",
    "Path",
    "Source",
    "decode_source",
    "dotted",
    "read_file",
    "read_source",
]

Path = tuple[str | int, ...]
"""Keys and list indices from the top of the document down to one value."""

_POLICY_SHAPE = "expected a mapping with providers, targets and routes"

MAX_BYTES = 1024 * 1024
"""The largest document read, in bytes of UTF-8 (a policy of 10,000 targets fits)."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists, aliases expanded (a policy needs about 6)."""
MAX_ALIASES = 10_000
"""The most aliases (`*name`) one document may use."""
MAX_VALUES = 200_000
"""The most keys and values a document may hold once every alias is expanded into a copy."""


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
    the parse, such as duplicate keys (the last one wins, as in `safe_load`); `invalid` are
    the paths of scalars that could not be read (a date such as 2024-13-45), left as text.
    """

    data: dict[str, Any]
    values: Mapping[Path, Location]
    keys: Mapping[Path, Location]
    issues: tuple[PolicyIssue, ...] = ()
    invalid: frozenset[Path] = frozenset()
    filename: str = "<document>"


def decode_source(data: bytes, filename: str) -> str:
    """The text of a file's bytes; `PolicyError` if too large or not UTF-8 (placed at the first bad byte)."""
    if len(data) > MAX_BYTES:
        raise _fatal(filename, Location(1, 1), _TOO_LARGE)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = len(data[data.rfind(b"\n", 0, error.start) + 1 : error.start].decode("utf-8", "replace")) + 1
        message = f"the file is not UTF-8 text (byte 0x{data[error.start]:02x})"
        raise _fatal(filename, Location(line, column), message) from None


def read_file(path: str | os.PathLike[str]) -> str:
    """The text of a document file; `PolicyError` if too large or not UTF-8, `OSError` if unreadable."""
    with open(path, "rb") as file:
        data = file.read(MAX_BYTES + 1)  # enough to tell that it is too large
    return decode_source(data, os.fspath(path))


def read_source(text: str, filename: str, *, kind: str = "policy", shape: str = _POLICY_SHAPE) -> Source:
    """Parse `text`; `PolicyError` if it is not YAML, passes a bound, or its top level is not a mapping.

    `kind` and `shape` describe the document in the messages of those last two ("the policy is
    empty; expected a mapping with providers, targets and routes").
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise _fatal(filename, Location(1, 1), _TOO_LARGE)
    try:
        _check_bounds_fast(text)
        return _read(text, filename, kind, shape)
    except _BoundPassed as error:
        raise _fatal(filename, error.where, error.message) from None
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


_TOO_LARGE = f"the document is larger than {MAX_BYTES:,} bytes, the most that is read"


class _BoundPassed(Exception):
    def __init__(self, event: yaml.Event, message: str) -> None:
        super().__init__(message)
        mark = event.start_mark  # PyYAML's or libyaml's: both have a line and a column
        self.where = Location(mark.line + 1, mark.column + 1) if mark else Location(1, 1)
        self.message = message


class _Bounds:
    """Follows a document's events and stops at the first bound it passes.

    Counts what the tree built from them would hold, each alias counted as a full copy of
    the node it names: the count is what the builder would make, known before it makes it.
    """

    def __init__(self) -> None:
        self._aliases = 0
        self._values = 0
        self._anchored: dict[str, tuple[int, int]] = {}  # anchor -> (values, height) of its node
        self._open: list[list[Any]] = []  # per open mapping or list: [anchor, values, height]

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.CollectionStartEvent):
            self._count(1, 1, event)
            self._open.append([event.anchor, 1, 1])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, values, height = self._open.pop()
            self._close(anchor, values, height)
        elif isinstance(event, yaml.ScalarEvent):
            self._count(1, 1, event)
            self._close(event.anchor, 1, 1)
        elif isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _BoundPassed(event, f"more than {MAX_ALIASES:,} aliases")
            # An anchor not complete yet is a recursive alias, which the builder reports.
            values, height = self._anchored.get(event.anchor or "", (1, 1))
            self._count(values, height, event)
            self._close(None, values, height)

    def _count(self, values: int, height: int, event: yaml.Event) -> None:
        if len(self._open) + height > MAX_DEPTH:
            raise _BoundPassed(event, f"nested more than {MAX_DEPTH} levels deep (aliases expanded)")
        self._values += values
        if self._values > MAX_VALUES:
            raise _BoundPassed(
                event,
                f"the document expands to more than {MAX_VALUES:,} keys and values "
                "(an alias counts as a copy of what it names)",
            )

    def _close(self, anchor: str | None, values: int, height: int) -> None:
        if anchor is not None:
            self._anchored[anchor] = (values, height)
        if self._open:
            parent = self._open[-1]
            parent[1] += values
            parent[2] = max(parent[2], height + 1)


def _check_bounds_fast(text: str) -> None:
    """Pass the events of libyaml's parser (about 20 times faster than PyYAML's) through the bounds.

    Only a speed-up: the document is bounded again as PyYAML composes it, which also judges
    the syntax, so a document libyaml cannot parse is left to it.
    """
    if not yaml.__with_libyaml__:
        return
    bounds = _Bounds()
    try:
        parser = yaml.CSafeLoader(text)
    except UnicodeError:  # a lone surrogate, which PyYAML's reader reports
        return
    try:
        while (event := parser.get_event()) is not None:
            bounds.feed(event)
    except yaml.YAMLError:
        return
    finally:
        parser.dispose()


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: it stops at the first event past a bound."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._bounds = _Bounds()

    def get_event(self) -> Any:
        event = super().get_event()  # type: ignore[no-untyped-call]
        self._bounds.feed(event)
        return event


def _read(text: str, filename: str, kind: str, shape: str) -> Source:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _fatal(filename, Location(1, 1), f"the {kind} is empty; {shape}")
        if not isinstance(node, yaml.MappingNode):
            raise _fatal(filename, Location.of(node.start_mark), f"the top level is not a mapping; {shape}")
        builder = _Builder(loader, filename)
        data = builder.build(node, ())
        issues, invalid = tuple(builder.issues), frozenset(builder.invalid)
        return Source(data, builder.values, builder.keys, issues, invalid, filename)
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
    invalid: set[Path] = field(default_factory=set)
    _open: set[int] = field(default_factory=set)

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.values[path] = Location.of(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
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

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        try:
            return self.loader.construct_object(node)
        except (ValueError, OverflowError):
            # A timestamp such as 2024-13-45, an integer of more than 4,300 digits.
            kind = str(node.tag).rsplit(":", 1)[-1]
            self._issue(node.start_mark, path, f"not a valid {kind}")
            self.invalid.add(path)
            return node.value

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
