"""A chaos scenario: YAML text -> a validated `Scenario`, or a `PolicyError` locating every problem.

A scenario names a load shape, a fault schedule for the fake upstream and the policy under
test (inline under `policy:`, or a file given apart). Locations come from the policy
machinery: `router.policy.source` reads the scenario with the place of every key and value,
and an inline policy is validated by `parse_policy` on its own slice of the file, padded so
that its issues keep the scenario's line and column numbers.

Faults are written as `router fake-upstream --fault` writes them (`503`, `429:retry_after=2`,
`cut:3`, `latency:200ms,50ms`, `outage:5s`), with their scope as keys of the entry.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from router.errors import PolicyError, PolicyIssue
from router.policy.interpolate import interpolate
from router.policy.loader import parse_policy
from router.policy.model import Duration, Policy, TargetRef
from router.policy.source import Location, Path, Source, dotted, read_source
from router.testing.faults import (
    FaultRule,
    Latency,
    Malformed,
    NoDone,
    RejectPrefill,
    parse_fault_spec,
)

__all__ = ["Load", "Scenario", "ScenarioSpec", "Window", "chaos_env", "load_scenario", "parse_scenario"]

_SHAPE = "expected a mapping with duration, load, faults and policy"
# Faults that do not make a call fail: a window of them is no outage of the primary.
_HARMLESS = (Latency, Malformed, NoDone, RejectPrefill)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Spec):
    """One rule of the fault schedule; times are seconds from the start of the load."""

    model: str | None = Field(None, description="The upstream model the fault strikes ('*': any).")
    target: str | None = Field(None, description="Or: a target of the policy (its model is struck).")
    fault: str = Field(description="KIND[:ARGS], as `router fake-upstream --fault` takes it: 503, cut:3.")
    start: Duration | None = None
    end: Duration | None = None
    probability: float = Field(1.0, ge=0, le=1, description="The share of matching requests struck.")
    times: int | None = Field(None, ge=0, description="Strike at most this many times.")
    after: int = Field(0, ge=0, description="Let this many matching requests through first.")

    @model_validator(mode="after")
    def _one_subject(self) -> FaultSpec:
        if (self.model is None) == (self.target is None):
            raise ValueError("give model or target (exactly one)")
        return self


class LoadSpec(_Spec):
    route: str = "chat"
    rate: float | None = Field(None, gt=0, description="Requests per second per worker (open loop).")
    concurrency: int | None = Field(
        None, ge=1, description="Or: requests in flight at all times, per worker."
    )
    stream: bool = False
    max_tokens: int = Field(32, ge=1)
    prompt: str = "Say hello."

    @model_validator(mode="after")
    def _one_shape(self) -> LoadSpec:
        if (self.rate is None) == (self.concurrency is None):
            raise ValueError("give rate or concurrency (exactly one)")
        return self


class ScenarioSpec(_Spec):
    """A whole scenario file."""

    name: str | None = Field(None, description="Default: the file's name without .yaml.")
    duration: Duration = Field(description="How long the load runs.")
    seed: int = 0
    load: LoadSpec
    workers: int = Field(1, ge=1, le=64, description="Worker processes, each sending the whole load.")
    redis: str | None = Field(None, description="Redis URL the workers share state through; ${VAR} allowed.")
    primary: str | None = Field(
        None, description="The target whose outages are timed; default: the route's first."
    )
    faults: list[FaultSpec] = Field(default_factory=list)
    policy: dict[str, Any] | None = Field(None, description="The policy under test (or --policy FILE).")


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """`[start, end)` in seconds from the start of the load."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Load:
    route: str
    rate: float | None
    concurrency: int | None
    stream: bool
    max_tokens: int
    prompt: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario: what to send, what breaks when, and the policy (as parsed, not yet pinned
    to a fake upstream; `policy_text` and `policy_file` parse it again in a worker process)."""

    name: str
    description: str
    duration: float
    seed: int
    load: Load
    faults: tuple[FaultRule, ...]
    primary: str
    primary_model: str
    workers: int
    redis: str | None
    policy: Policy
    policy_text: str
    policy_file: str

    @property
    def incidents(self) -> tuple[Window, ...]:
        """Windows in which every call to the primary's model fails: the outages to time."""
        windows = sorted(
            Window(rule.start or 0.0, rule.end)
            for rule in self.faults
            if rule.end is not None
            and rule.matches_model(self.primary_model)
            and rule.probability >= 1.0
            and rule.times is None
            and rule.after == 0
            and not isinstance(rule.fault, _HARMLESS)
            and (self.load.stream or not rule.fault.stream_only)
        )
        merged: list[Window] = []
        for window in windows:
            if merged and window.start <= merged[-1].end:
                merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
            else:
                merged.append(window)
        return tuple(merged)

    def route_targets(self) -> tuple[str, ...]:
        return _route_targets(self.policy, self.load.route)


# A reference without a default: `${NAME}` (an escaped `$${NAME}` matches too, harmlessly).
_BARE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def chaos_env(policy_text: str) -> Mapping[str, str]:
    """The environment a chaos policy is read in: a variable it needs that is not set reads "chaos".

    Credentials and URLs are replaced when the policy is pinned to the fake upstream, so a
    production policy that takes its key from `${OPENAI_API_KEY}` runs without one;
    `${NAME:-default}` keeps its default.
    """
    missing = {name: "chaos" for name in _BARE_REFERENCE.findall(policy_text) if not os.environ.get(name)}
    return {**os.environ, **missing}


def load_scenario(
    path: str | os.PathLike[str], *, policy_path: str | os.PathLike[str] | None = None
) -> Scenario:
    """Read and validate a scenario file; `policy_path` replaces its inline policy."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    policy = None
    if policy_path is not None:
        with open(policy_path, encoding="utf-8") as file:
            policy = (file.read(), os.fspath(policy_path))
    return parse_scenario(text, os.fspath(path), policy=policy)


def parse_scenario(
    text: str, filename: str = "<scenario>", *, policy: tuple[str, str] | None = None
) -> Scenario:
    """Validate a scenario given as YAML; `policy` is (text, filename) of a policy replacing the inline one.

    Raises `PolicyError` whose issues name file:line:column and the field, for every problem found.
    """
    source = _read(text, filename)
    issues = list(source.issues)
    spec: ScenarioSpec | None = None
    try:
        spec = ScenarioSpec.model_validate(source.data)
    except ValidationError as error:
        issues += [_issue(detail, source, filename) for detail in error.errors(include_url=False)]

    parsed: Policy | None = None
    policy_text, policy_file, inline = "", filename, False
    if policy is not None:
        policy_text, policy_file = policy
    elif isinstance(source.data.get("policy"), dict):
        policy_text, inline = _inline_policy(text), True
    elif source.data.get("policy") is None:
        issues.append(_at(source, filename, (), "no policy: write one under 'policy:' or give --policy FILE"))
    if policy is not None or inline:
        try:
            parsed = parse_policy(policy_text, policy_file, env=chaos_env(policy_text))
        except PolicyError as error:
            issues += [_under_policy(issue) if inline else issue for issue in error.issues]

    rules: list[FaultRule] = []
    if spec is not None:
        rules, problems = _rules(spec, parsed)
        issues += [_at(source, filename, path, message) for path, message in problems]
    if spec is not None and parsed is not None:
        issues += [_at(source, filename, path, message) for path, message in _references(spec, parsed)]
    redis = interpolate(spec.redis, os.environ) if spec is not None and spec.redis else None
    if redis is not None:
        issues += [_at(source, filename, ("redis",), problem) for problem in redis.problems]
    if issues:
        raise PolicyError(
            sorted(set(issues), key=lambda issue: (issue.file, issue.line, issue.column, issue.path))
        )
    assert spec is not None and parsed is not None
    targets = _route_targets(parsed, spec.load.route)
    primary = spec.primary or targets[0]
    load = spec.load
    return Scenario(
        name=spec.name or FilePath(filename).stem,
        description=_description(text),
        duration=spec.duration,
        seed=spec.seed,
        load=Load(load.route, load.rate, load.concurrency, load.stream, load.max_tokens, load.prompt),
        faults=tuple(rules),
        primary=primary,
        primary_model=parsed.targets[primary].model,
        workers=spec.workers,
        redis=(redis.text or None) if redis is not None else None,
        policy=parsed,
        policy_text=policy_text,
        policy_file=policy_file,
    )


# -- reading -----------------------------------------------------------------------------------


def _read(text: str, filename: str) -> Source:
    try:
        return read_source(text, filename)
    except PolicyError as error:
        # The reader speaks of policies; where it judges the document's shape, say what a scenario is.
        [issue] = error.issues
        if issue.message.startswith(("the policy is empty", "the top level is not a mapping")):
            what = "the scenario is empty" if "empty" in issue.message else "the top level is not a mapping"
            raise PolicyError(
                [PolicyIssue(filename, issue.line, issue.column, "", f"{what}; {_SHAPE}")]
            ) from None
        raise


def _description(text: str) -> str:
    """The scenario's one-line explanation: its first comment."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if stripped:
            break
    return ""


def _inline_policy(text: str) -> str:
    """The text of the `policy:` value, at the same lines and columns as in the scenario.

    Lines before it become empty and the first line's prefix becomes spaces: a block mapping
    indented as a whole, or a flow mapping, is a document of its own, and every mark in it
    (so every issue that `parse_policy` reports) points where it points in the scenario.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)
    node = next(value for key, value in reversed(root.value) if key.value == "policy")
    line: int = node.start_mark.line
    column: int = node.start_mark.column
    start: int = node.start_mark.index
    end: int = node.end_mark.index
    return "\n" * line + " " * column + text[start:end]


def _under_policy(issue: PolicyIssue) -> PolicyIssue:
    path = f"policy.{issue.path}" if issue.path else "policy"
    return PolicyIssue(issue.file, issue.line, issue.column, path, issue.message)


# -- checks ------------------------------------------------------------------------------------


def _route_targets(policy: Policy, route: str) -> tuple[str, ...]:
    return tuple(
        entry.target if isinstance(entry, TargetRef) else entry for entry in policy.routes[route].targets
    )


def _rules(spec: ScenarioSpec, policy: Policy | None) -> tuple[list[FaultRule], list[tuple[Path, str]]]:
    """The fault schedule as rules for the fake upstream, and the entries that do not make one."""
    rules: list[FaultRule] = []
    problems: list[tuple[Path, str]] = []
    for index, entry in enumerate(spec.faults):
        path: Path = ("faults", index)
        model = entry.model
        if entry.target is not None:
            if policy is None:
                continue  # reported with the policy
            target = policy.targets.get(entry.target)
            if target is None:
                problems.append(((*path, "target"), _unknown("target", entry.target, policy.targets)))
                continue
            model = target.model
        assert model is not None
        try:
            rule = parse_fault_spec(f"{model}={entry.fault}")
        except ValueError as error:
            message = str(error).split(": ", 1)[-1]  # the spec quotes the model we put in front
            problems.append(((*path, "fault"), message))
            continue
        scoped = (rule.times, rule.after, rule.probability) != (None, 0, 1.0)
        outage = rule.end is not None and rule.start is None
        if scoped or (rule.start is not None):
            problems.append(
                ((*path, "fault"), "write times, after, start, end and probability as keys of the entry")
            )
            continue
        start, end = entry.start, entry.end
        if outage:
            if end is not None:
                problems.append(((*path, "end"), "an outage takes its length, not end"))
                continue
            assert rule.end is not None
            end = (start or 0.0) + rule.end
        if start is not None and end is not None and end < start:
            problems.append(((*path, "end"), "end is before start"))
            continue
        rules.append(
            FaultRule(
                model,
                rule.fault,
                times=entry.times,
                after=entry.after,
                start=start,
                end=end,
                probability=entry.probability,
            )
        )
    return rules, problems


def _references(spec: ScenarioSpec, policy: Policy) -> list[tuple[Path, str]]:
    route = spec.load.route
    if route not in policy.routes:
        return [(("load", "route"), _unknown("route", route, policy.routes))]
    targets = _route_targets(policy, route)
    if spec.primary is not None and spec.primary not in targets:
        return [(("primary",), f"{spec.primary!r} is not a target of route {route!r}: {', '.join(targets)}")]
    return []


def _unknown(what: str, name: str, defined: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(defined), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(defined) or 'none'}"
    return f"unknown {what} {name!r}{hint}"


# -- locating pydantic's errors ------------------------------------------------------------------


def _issue(detail: ErrorDetails, source: Source, filename: str) -> PolicyIssue:
    path, model = _path(detail["loc"])
    kind = detail["type"]
    if kind == "extra_forbidden" and model is not None:
        key = str(path[-1])
        close = difflib.get_close_matches(key, list(model.model_fields), n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else f"; expected one of: {', '.join(model.model_fields)}"
        )
        where = source.keys.get(path) or _nearest(source, path)
        return PolicyIssue(filename, where.line, where.column, dotted(path), f"unknown key {key!r}{hint}")
    if kind == "missing":
        return _at(source, filename, path, f"missing required key {path[-1]!r}", _nearest(source, path[:-1]))
    message = detail["msg"].removeprefix("Value error, ")
    message = _EXPECTED.get(kind, message)
    return _at(source, filename, path, message)


_EXPECTED = {
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def _path(loc: tuple[int | str, ...]) -> tuple[Path, type[BaseModel] | None]:
    """The data path of a pydantic `loc`, and the model whose field its last key is."""
    annotation: Any = ScenarioSpec
    model: type[BaseModel] | None = None
    path: list[str | int] = []
    for step in loc:
        annotation = _unwrap(annotation)
        path.append(step)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            field = annotation.model_fields.get(str(step))
            annotation = field.annotation if field else None
        else:
            model = None
            args = get_args(annotation)
            annotation = args[-1] if get_origin(annotation) in (list, dict) and args else None
    return tuple(path), model


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> `X`: optional fields add no level to pydantic's loc."""
    members = [arg for arg in get_args(annotation) if arg is not type(None)]
    if type(None) in get_args(annotation) and len(members) == 1:
        return members[0]
    return annotation


def _nearest(source: Source, path: Path) -> Location:
    while path not in source.values:
        path = path[:-1]
    return source.values[path]


def _at(
    source: Source, filename: str, path: Path, message: str, where: Location | None = None
) -> PolicyIssue:
    where = where or _nearest(source, path)
    return PolicyIssue(filename, where.line, where.column, dotted(path), message)
