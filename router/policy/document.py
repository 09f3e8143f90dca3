"""A YAML document -> a validated pydantic model, or the issues that stop it, each located.

The one pipeline every file the router reads goes through (a policy, a chaos scenario): YAML
with locations (`source`), `${VAR}` interpolation (`interpolate`), the model, then the caller's
checks (cross-references). Pydantic's errors are rewritten: located at the offending key or
value, phrased for a person editing YAML, stripped of input values; and whatever came from the
environment, which may be a secret, is hidden in every message and from the logs.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from router._registry import RegisteredName
from router.errors import PolicyIssue
from router.logs import hide, register_secrets
from router.policy.interpolate import interpolate
from router.policy.source import Location, Path, Source, dotted

__all__ = ["Problem", "did_you_mean", "explain", "known", "validate_document"]

M = TypeVar("M", bound=BaseModel)

# What a type error expected, in the words of someone editing YAML.
_EXPECTED = {
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong at `path` of a document; placed at its value, or at the key naming it (`at_key`)."""

    path: Path
    message: str
    at_key: bool = False


def validate_document(
    model: type[M],
    source: Source,
    env: Mapping[str, str],
    *,
    checks: Callable[[M], Iterable[Problem]] | None = None,
    verbatim: Collection[Path] = (),
    validate: Callable[[Any], M | list[ErrorDetails]] | None = None,
) -> M | list[PolicyIssue]:
    """`source` with its `${VAR}` references taken from `env`, validated as `model`, then given to
    `checks`: the model, or every issue found (the source's own too), located and sorted.

    `verbatim`: subtrees taken as written (a policy inside a scenario, which its own loader reads).
    `validate`: validates in place of `model.model_validate`, returning pydantic's error details.
    """
    data, secrets, problems = _interpolate(source, env, verbatim)
    # Whatever came from the environment may be a secret: the log filter hides it from here on.
    register_secrets(value for values in secrets.values() for value in values)
    # A value already reported (unresolved, not text, unreadable) is not reported again by validation.
    unresolved = [*(problem.path for problem in problems), *source.invalid]
    validated = validate(data) if validate is not None else _validated(model, data)
    if isinstance(validated, model):
        problems += checks(validated) if checks is not None else ()
        if not source.issues and not problems:
            return validated
    else:
        assert isinstance(validated, list)
        problems += [p for p in explain(model, validated) if not _under_any(p.path, unresolved)]
    issues = [*source.issues, *(_issue(problem, source, secrets) for problem in problems)]
    shown = (replace(issue, path=_shown(issue.path), message=_shown(issue.message)) for issue in issues)
    return sorted(shown, key=lambda issue: (issue.line, issue.column, issue.path))


def _validated(model: type[M], data: Any) -> M | list[ErrorDetails]:
    # Returning the details keeps the ValidationError, whose text quotes input values, out of
    # the chain of the PolicyError raised later.
    try:
        return model.model_validate(data)
    except ValidationError as error:
        return error.errors(include_url=False)


def explain(model: type[BaseModel], details: Iterable[ErrorDetails]) -> list[Problem]:
    """Pydantic's errors validating `model`, at the data paths they are about, in YAML words."""
    sited = [(detail, _site(model, detail["loc"])) for detail in details]
    problems = [_problem(detail, site) for detail, site in sited if site.union is None]
    branches: dict[Path, dict[Any, list[tuple[ErrorDetails, _Site]]]] = {}
    for detail, site in sited:
        if site.union is not None:
            union_path, member = site.union
            branches.setdefault(union_path, {}).setdefault(member, []).append((detail, site))
    for union_path, members in branches.items():
        # A member the value does not even have the shape of explains nothing; report the
        # errors of the members it resembles, or, if none, what shapes were expected.
        fitting = {m: errors for m, errors in members.items() if not _wrong_shape(errors, union_path)}
        if fitting:
            problems += [_problem(d, site) for errors in fitting.values() for d, site in errors]
        else:
            shapes = " or ".join(dict.fromkeys(_shape(member) for member in members))
            problems.append(Problem(union_path, f"expected {shapes}"))
    return problems


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the choice closest to `word`, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def known(name: str, defined: Mapping[str, Any]) -> str:
    """What to say after "unknown target 'x'": the closest name `defined`, or all of them."""
    if not defined:
        return " (none are defined)"
    return did_you_mean(name, defined) or f"; defined: {', '.join(defined)}"


def _issue(problem: Problem, source: Source, secrets: Mapping[Path, tuple[str, ...]]) -> PolicyIssue:
    where = (_nearest(source.keys, problem.path) if problem.at_key else None) or _nearest(
        source.values, problem.path
    )
    assert where is not None  # the top level is always written
    hidden = {secret for path, values in secrets.items() if _under(path, problem.path) for secret in values}
    message = hide(problem.message, hidden)
    return PolicyIssue(source.filename, where.line, where.column, dotted(problem.path), message)


def _interpolate(
    source: Source, env: Mapping[str, str], verbatim: Collection[Path]
) -> tuple[Any, dict[Path, tuple[str, ...]], list[Problem]]:
    secrets: dict[Path, tuple[str, ...]] = {}
    problems: list[Problem] = []

    def walk(value: Any, path: Path) -> Any:
        if path in verbatim:
            return value
        if isinstance(value, dict):
            for key in value:
                if not _is_text(key):
                    problems.append(Problem((*path, key), _NOT_TEXT, at_key=True))
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*path, index)) for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        result = interpolate(value, env)
        if result.secrets:
            secrets[path] = result.secrets
        problems.extend(Problem(path, message) for message in result.problems)
        if not _is_text(result.text):
            problems.append(Problem(path, _NOT_TEXT))
        return result.text

    return walk(source.data, ()), secrets, problems


_NOT_TEXT = "contains an unpaired surrogate (such as \\ud800), which no file or terminal can show"


def _shown(text: str) -> str:
    """`text` with any lone surrogate written as an escape, so that the message can be printed."""
    return text if _is_text(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_text(value: str) -> bool:
    """Can `value` be written out? A lone surrogate (`"\\ud800"` in YAML, or from the environment) cannot."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Site:
    """Where a pydantic error `loc` points: in the data, and in the model's types."""

    path: Path
    model: type[BaseModel] | None  # the model whose field is the last key of `path`
    annotation: Any  # the type expected at `path`
    union: tuple[Path, Any] | None  # the first union passed on the way, and the member taken


def _problem(detail: ErrorDetails, site: _Site) -> Problem:
    kind, value, path = detail["type"], detail["input"], site.path
    if kind == "extra_forbidden" and site.model is not None:
        allowed = site.model.model_fields
        hint = did_you_mean(str(path[-1]), allowed) or f"; expected one of: {', '.join(allowed)}"
        return Problem(path, f"unknown key {path[-1]!r}{hint}", at_key=True)
    if kind == "missing":
        return Problem(path, f"missing required key {path[-1]!r}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _tag_problem(detail, site)
    choices = _choices(site.annotation)
    if kind in ("literal_error", "enum") and choices:
        listed = ", ".join(repr(choice) for choice in choices)
        message = f"must be {listed}" if len(choices) == 1 else f"must be one of {listed}"
        return Problem(path, message + did_you_mean(str(value), [str(c) for c in choices]))
    if kind in _EXPECTED:
        return Problem(path, f"expected {_EXPECTED[kind]}")
    return Problem(path, _without_input(detail["msg"], value))


def _tag_problem(detail: ErrorDetails, site: _Site) -> Problem:
    """A tagged union's tag (`kind: cut`) missing, or naming no member."""
    context = detail.get("ctx") or {}
    key = str(context.get("discriminator", "kind")).strip("'")
    path = (*site.path, key)
    if detail["type"] == "union_tag_not_found":
        return Problem(path, f"missing required key {key!r}")
    tag, tags = str(context.get("tag")), [str(tag) for tag in _tags(site.annotation)]
    hint = did_you_mean(tag, tags) or f"; expected one of: {', '.join(tags)}"
    return Problem(path, f"unknown {key} {tag!r}{hint}")


def _without_input(message: str, value: Any) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if isinstance(value, str):
        quoted = repr(value)
        message = re.sub(rf",?\s*got {re.escape(quoted)}", "", message).replace(quoted, "the value")
    return message


def _site(root: type[BaseModel], loc: tuple[int | str, ...]) -> _Site:
    annotation: Any = root
    model: type[BaseModel] | None = None
    path: list[Any] = []
    union: tuple[Path, Any] | None = None
    for step in loc:
        annotation = _unwrap(annotation)
        # Pydantic names the union member it tried in the loc: by type (`str`, `TargetRef`), or
        # by its tag in a tagged union (`cut`).
        member = next((m for m in _members(annotation) if step == getattr(m, "__name__", None)), None)
        member = member or next((m for m in _members(annotation) if step in _tags(m)), None)
        if member is not None:
            union = union or (tuple(path), member)
            annotation = member
            continue
        path.append(step)
        model = annotation if _is_model(annotation) else None
        annotation = _child(annotation, step)
    return _Site(tuple(path), model, annotation, union)


def _child(annotation: Any, step: int | str) -> Any:
    if _is_model(annotation):
        field = annotation.model_fields.get(str(step))
        return field.annotation if field else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict:
        return args[1]
    if origin in (list, tuple):
        return args[0]
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip `Annotated[...]` and `| None`, which add no level to pydantic's loc."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        members = _members(annotation)
        if type(None) in get_args(annotation) and len(members) == 1:
            annotation = members[0]
            continue
        return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(m for m in get_args(annotation) if m is not type(None))
    return ()


def _tags(annotation: Any) -> tuple[Any, ...]:
    """The tags that select `annotation` in a tagged union (the values of its `Literal` fields);
    of a union, those of every member."""
    annotation = _unwrap(annotation)
    if members := _members(annotation):
        return tuple(tag for member in members for tag in _tags(member))
    if not _is_model(annotation):
        return ()
    fields = annotation.model_fields.values()
    return tuple(v for f in fields if get_origin(f.annotation) is Literal for v in get_args(f.annotation))


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _choices(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [member.value for member in annotation]
    if isinstance(annotation, type) and issubclass(annotation, RegisteredName):
        return list(annotation.choices())
    return []


def _wrong_shape(errors: list[tuple[ErrorDetails, _Site]], union_path: Path) -> bool:
    return len(errors) == 1 and errors[0][1].path == union_path and errors[0][0]["type"] in _EXPECTED


def _shape(member: Any) -> str:
    if _is_model(member):
        return "a mapping"
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(
        member, getattr(member, "__name__", str(member))
    )


def _nearest(locations: Mapping[Path, Location], path: Path) -> Location | None:
    """Where `path` was written, or its closest ancestor that was (None if none was)."""
    while path not in locations:
        if not path:
            return None
        path = path[:-1]
    return locations[path]


def _under(path: Path, ancestor: Path) -> bool:
    return path[: len(ancestor)] == ancestor


def _under_any(path: Path, ancestors: Iterable[Path]) -> bool:
    return any(_under(path, ancestor) for ancestor in ancestors)
