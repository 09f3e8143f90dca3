"""Policy text -> a validated `Policy`, or a `PolicyError` that locates every problem.

Steps: YAML with locations (`source`), `${VAR}` interpolation (`interpolate`), the pydantic
models, then cross-references (route -> target -> provider). Pydantic's errors are
rewritten: located at the offending key or value, phrased for a person editing YAML, and
stripped of input values, which may be interpolated secrets.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from router._registry import RegisteredName
from router.errors import PolicyError, PolicyIssue
from router.logs import hide, register_secrets
from router.policy.interpolate import interpolate
from router.policy.model import BudgetSpec, Policy, ProviderSpec, RouteSpec, TargetSpec
from router.policy.source import MAX_BYTES, Location, Path, Source, decode_source, dotted, read_source

__all__ = ["load_policy", "parse_policy", "policy_json_schema", "reference_problems"]

_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

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


def load_policy(path: str | os.PathLike[str], *, environment: bool = False) -> Policy:
    """Read and validate a policy file; `${VAR}` references are taken from `os.environ`.

    `environment`: also check that the environment holds what every provider needs to
    authenticate (see `parse_policy`). Raises `PolicyError` for a file that is too large or not
    UTF-8 as for any other issue, `OSError` if it cannot be read.
    """
    with open(path, "rb") as file:
        data = file.read(MAX_BYTES + 1)  # enough to tell that it is too large
    return parse_policy(decode_source(data, os.fspath(path)), os.fspath(path), environment=environment)


def parse_policy(
    text: str, filename: str = "<policy>", env: Mapping[str, str] | None = None, *, environment: bool = False
) -> Policy:
    """Validate a policy given as YAML text; raise `PolicyError` listing every issue found.

    `environment`: also report every API key and AWS credential that neither the policy nor `env`
    provides, each at its provider; otherwise they are looked for when the router starts.
    """
    env = os.environ if env is None else env
    source = read_source(text, filename)
    data, secrets, problems = _interpolate(source, env)
    # Whatever came from the environment may be a secret: the log filter hides it from here on.
    register_secrets(value for values in secrets.values() for value in values)
    # A value already reported (unresolved, not text, unreadable) is not reported again by validation.
    unresolved = [*(problem.path for problem in problems), *source.invalid]
    validated = _validate(data)
    if isinstance(validated, Policy):
        problems += _reference_problems(validated, source)
        if environment:
            problems += _environment_problems(validated, source, env)
    else:
        # A value whose reference could not be resolved has already been reported.
        problems += [p for p in _validation_problems(validated, source) if not _under_any(p.path, unresolved)]
    issues = [*source.issues, *(problem.issue(filename, secrets) for problem in problems)]
    if issues:
        shown = (replace(issue, path=_shown(issue.path), message=_shown(issue.message)) for issue in issues)
        raise PolicyError(sorted(shown, key=lambda issue: (issue.line, issue.column, issue.path)))
    assert isinstance(validated, Policy)  # no issues, so it validated
    return validated


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editors that complete and check YAML."""
    return {"$schema": _JSON_SCHEMA_DIALECT, **Policy.model_json_schema(), "title": "router policy"}


def reference_problems(policy: Policy) -> list[tuple[str, str]]:
    """Names that point nowhere, as (dotted path, message): route targets, target providers, aliases."""
    problems: list[tuple[str, str]] = []
    for name, target in policy.targets.items():
        if target.provider not in policy.providers:
            message = f"unknown provider {target.provider!r}{_known(target.provider, policy.providers)}"
            problems.append((dotted(("targets", name, "provider")), message))
    for route_name, route in policy.routes.items():
        for index, entry in enumerate(route.targets):
            path: Path = ("routes", route_name, "targets", index)
            name = entry if isinstance(entry, str) else entry.target
            if name not in policy.targets:
                where = dotted(path if isinstance(entry, str) else (*path, "target"))
                problems.append((where, f"unknown target {name!r}{_known(name, policy.targets)}"))
    tiers = {target.tier: None for target in policy.targets.values()}
    for name, budget in policy.budgets.items():
        if budget.route is not None and budget.route not in policy.routes:
            message = f"unknown route {budget.route!r}{_known(budget.route, policy.routes)}"
            problems.append((dotted(("budgets", name, "route")), message))
        if budget.tier is not None and budget.tier not in tiers:
            problems.append(
                (
                    dotted(("budgets", name, "tier")),
                    f"no target is in tier {budget.tier!r}{_known(budget.tier, tiers)}",
                )
            )
    names = {**policy.routes, **policy.targets}
    for alias, name in policy.aliases.items():
        where = dotted(("aliases", alias))
        if alias in policy.routes:
            problems.append((where, f"alias {alias!r} hides the route of the same name"))
        elif name not in names:
            problems.append((where, f"{name!r} is neither a route nor a target{_known(name, names)}"))
    return problems


@dataclass(frozen=True, slots=True)
class _Problem:
    path: Path
    where: Location
    message: str

    def issue(self, filename: str, secrets: Mapping[Path, tuple[str, ...]]) -> PolicyIssue:
        hidden = {secret for path, values in secrets.items() if _under(path, self.path) for secret in values}
        message = hide(self.message, hidden)
        return PolicyIssue(filename, self.where.line, self.where.column, dotted(self.path), message)


def _interpolate(
    source: Source, env: Mapping[str, str]
) -> tuple[Any, dict[Path, tuple[str, ...]], list[_Problem]]:
    secrets: dict[Path, tuple[str, ...]] = {}
    problems: list[_Problem] = []

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            for key in value:
                if not _is_text(key):
                    problems.append(_Problem((*path, key), source.keys[(*path, key)], _NOT_TEXT))
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*path, index)) for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        result = interpolate(value, env)
        if result.secrets:
            secrets[path] = result.secrets
        problems.extend(_Problem(path, source.values[path], message) for message in result.problems)
        if not _is_text(result.text):
            problems.append(_Problem(path, source.values[path], _NOT_TEXT))
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


# The sections that may hold thousands of entries: validated one entry at a time, since one
# validation of a large policy holds the GIL (and so stalls an event loop, see `Router.areload`)
# for tens of milliseconds. The policy then takes the validated entries as they are.
_ENTRIES: dict[str, type[BaseModel]] = {
    "providers": ProviderSpec,
    "targets": TargetSpec,
    "routes": RouteSpec,
    "budgets": BudgetSpec,
}


def _validate(data: Any) -> Policy | list[ErrorDetails]:
    # Raising PolicyError outside this handler keeps the ValidationError, whose text quotes
    # input values, out of the exception chain.
    details: list[ErrorDetails] = []
    if isinstance(data, dict):
        data = dict(data)
        for section, model in _ENTRIES.items():
            entries = data.get(section)
            if not isinstance(entries, dict):
                continue  # reported by the policy's own validation
            validated: dict[Any, Any] = {}
            for name, entry in entries.items():
                try:
                    validated[name] = model.model_validate(entry)
                except ValidationError as error:
                    for detail in error.errors(include_url=False):
                        detail["loc"] = (section, name, *detail["loc"])
                        details.append(detail)
            data[section] = validated
    try:
        policy = Policy.model_validate(data)
    except ValidationError as error:
        return details + error.errors(include_url=False)
    return details or policy


def _environment_problems(policy: Policy, source: Source, env: Mapping[str, str]) -> list[_Problem]:
    # Imported here: the providers import the policy's models.
    from router.providers.credentials import missing_credentials

    problems = []
    for name, spec in policy.providers.items():
        for field, message in missing_credentials(spec, env):
            path: Path = ("providers", name, field)
            where = source.keys.get(path) or source.keys[("providers", name)]
            problems.append(_Problem(path, where, message))
    return problems


def _reference_problems(policy: Policy, source: Source) -> list[_Problem]:
    paths = {dotted(path): path for path in source.values}
    problems = []
    for text, message in reference_problems(policy):
        path = paths.get(text, ())
        problems.append(_Problem(path, source.values[path], message))
    return problems


@dataclass(frozen=True, slots=True)
class _Site:
    """Where a pydantic error `loc` points: in the data, and in the model's types."""

    path: Path
    model: type[BaseModel] | None  # the model whose field is the last key of `path`
    annotation: Any  # the type expected at `path`
    union: tuple[Path, Any] | None  # the first union passed on the way, and the member taken


def _validation_problems(details: Iterable[ErrorDetails], source: Source) -> list[_Problem]:
    sited = [(detail, _site(detail["loc"])) for detail in details]
    problems = [_problem(detail, site, source) for detail, site in sited if site.union is None]
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
            problems += [_problem(d, site, source) for errors in fitting.values() for d, site in errors]
        else:
            shapes = " or ".join(dict.fromkeys(_shape(member) for member in members))
            problems.append(_Problem(union_path, _nearest(source.values, union_path), f"expected {shapes}"))
    return problems


def _problem(detail: ErrorDetails, site: _Site, source: Source) -> _Problem:
    kind, value, path = detail["type"], detail["input"], site.path
    where = _nearest(source.values, path)
    if kind == "extra_forbidden" and site.model is not None:
        allowed = site.model.model_fields
        hint = _did_you_mean(str(path[-1]), allowed) or f"; expected one of: {', '.join(allowed)}"
        return _Problem(path, source.keys.get(path, where), f"unknown key {path[-1]!r}{hint}")
    if kind == "missing":
        return _Problem(path, _nearest(source.values, path[:-1]), f"missing required key {path[-1]!r}")
    choices = _choices(site.annotation)
    if kind in ("literal_error", "enum") and choices:
        listed = ", ".join(repr(choice) for choice in choices)
        message = f"must be {listed}" if len(choices) == 1 else f"must be one of {listed}"
        return _Problem(path, where, message + _did_you_mean(str(value), [str(c) for c in choices]))
    if kind in _EXPECTED:
        return _Problem(path, where, f"expected {_EXPECTED[kind]}")
    return _Problem(path, where, _without_input(detail["msg"], value))


def _without_input(message: str, value: Any) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if isinstance(value, str):
        quoted = repr(value)
        message = re.sub(rf",?\s*got {re.escape(quoted)}", "", message).replace(quoted, "the value")
    return message


def _site(loc: tuple[int | str, ...]) -> _Site:
    annotation: Any = Policy
    model: type[BaseModel] | None = None
    path: list[Any] = []
    union: tuple[Path, Any] | None = None
    for step in loc:
        annotation = _unwrap(annotation)
        # Pydantic names the union member it tried (`str`, `TargetRef`) in the loc.
        member = next((m for m in _members(annotation) if getattr(m, "__name__", None) == step), None)
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


def _nearest(locations: Mapping[Path, Location], path: Path) -> Location:
    while path not in locations:
        path = path[:-1]
    return locations[path]


def _under(path: Path, ancestor: Path) -> bool:
    return path[: len(ancestor)] == ancestor


def _under_any(path: Path, ancestors: Iterable[Path]) -> bool:
    return any(_under(path, ancestor) for ancestor in ancestors)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _known(name: str, defined: Mapping[str, Any]) -> str:
    if not defined:
        return " (none are defined)"
    return _did_you_mean(name, defined) or f"; defined: {', '.join(defined)}"
