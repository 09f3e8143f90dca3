"""A chaos scenario: YAML text -> a validated `Scenario`, or a `PolicyError` locating every problem.

A scenario names a load shape, a fault schedule for the fake upstream and the policy under
test (inline under `policy:`, or a file given apart). It is read by the policy's document
pipeline (`router.policy.document`); an inline policy is validated by `parse_policy` on its own
slice of the file, padded so that its issues keep the scenario's line and column numbers.

A fault is a mapping tagged by its kind (`{kind: outage, length: 5s}`) or its text form, as
`router fake-upstream --fault` takes it (`503`, `429:retry_after=2`, `cut:3`, `latency:200ms,50ms`,
`outage:5s`); its scope (start, end, probability, times, after) is keys of the entry. See
`router.testing._fault_spec`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.errors import PolicyError, PolicyIssue
from router.policy.document import Problem, known, validate_document
from router.policy.loader import parse_policy
from router.policy.model import Duration, Policy, TargetRef
from router.policy.source import Source, read_file, read_source
from router.testing._fault_spec import FaultScope
from router.testing.faults import FaultRule, Latency, Malformed, NoDone, RejectPrefill

__all__ = ["Load", "Scenario", "ScenarioSpec", "Window", "chaos_env", "load_scenario", "parse_scenario"]

_SHAPE = "expected a mapping with duration, load, faults and policy"
# Faults that do not make a call fail: a window of them is no outage of the primary.
_HARMLESS = (Latency, Malformed, NoDone, RejectPrefill)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultEntry(FaultScope):
    """One rule of the fault schedule; times are seconds from the start of the load."""

    model: str | None = Field(None, description="The upstream model the fault strikes ('*': any).")
    target: str | None = Field(None, description="Or: a target of the policy (its model is struck).")

    @model_validator(mode="after")
    def _one_subject(self) -> FaultEntry:
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
    faults: list[FaultEntry] = Field(default_factory=list)
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
    policy = (read_file(policy_path), os.fspath(policy_path)) if policy_path is not None else None
    return parse_scenario(read_file(path), os.fspath(path), policy=policy)


def parse_scenario(
    text: str, filename: str = "<scenario>", *, policy: tuple[str, str] | None = None
) -> Scenario:
    """Validate a scenario given as YAML; `policy` is (text, filename) of a policy replacing the inline one.

    Raises `PolicyError` whose issues name file:line:column and the field, for every problem found.
    """
    source = read_source(text, filename, kind="scenario", shape=_SHAPE)
    parsed, policy_text, policy_file, issues = _policy_under_test(source, text, policy)
    spec = validate_document(
        ScenarioSpec,
        source,
        os.environ,
        checks=lambda spec: _references(spec, parsed) if parsed is not None else [],
        verbatim=[("policy",)],  # parse_policy reads it
    )
    if not isinstance(spec, ScenarioSpec):
        issues += spec
    if issues:
        raise PolicyError(
            sorted(set(issues), key=lambda issue: (issue.file, issue.line, issue.column, issue.path))
        )
    assert isinstance(spec, ScenarioSpec) and parsed is not None
    primary = spec.primary or _route_targets(parsed, spec.load.route)[0]
    return Scenario(
        name=spec.name or FilePath(filename).stem,
        description=_description(text),
        duration=spec.duration,
        seed=spec.seed,
        load=Load(**spec.load.model_dump()),
        faults=tuple(entry.rule(_model_of(entry, parsed)) for entry in spec.faults),
        primary=primary,
        primary_model=parsed.targets[primary].model,
        workers=spec.workers,
        redis=spec.redis or None,
        policy=parsed,
        policy_text=policy_text,
        policy_file=policy_file,
    )


def _policy_under_test(
    source: Source, text: str, given: tuple[str, str] | None
) -> tuple[Policy | None, str, str, list[PolicyIssue]]:
    """The policy (given apart, else inline), its text and file name, and its issues."""
    written = source.data.get("policy")
    inline = given is None and isinstance(written, dict)
    policy_text, policy_file = given if given is not None else ("", source.filename)
    if inline:
        policy_text = _inline_policy(text)
    elif given is None:
        # A policy that is not a mapping is reported by the scenario's own validation.
        where, message = source.values[()], "no policy: write one under 'policy:' or give --policy FILE"
        missing = [PolicyIssue(source.filename, where.line, where.column, "", message)]
        return None, policy_text, policy_file, missing if written is None else []
    try:
        parsed = parse_policy(policy_text, policy_file, env=chaos_env(policy_text))
    except PolicyError as error:
        return None, policy_text, policy_file, [_under_policy(i) if inline else i for i in error.issues]
    return parsed, policy_text, policy_file, []


# -- reading -----------------------------------------------------------------------------------


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


def _model_of(entry: FaultEntry, policy: Policy) -> str:
    return entry.model if entry.model is not None else policy.targets[str(entry.target)].model


def _references(spec: ScenarioSpec, policy: Policy) -> list[Problem]:
    """Names the scenario gives that the policy does not have: fault targets, the route, the primary."""
    problems = [
        Problem(("faults", index, "target"), f"unknown target {name!r}{known(name, policy.targets)}")
        for index, name in enumerate(entry.target for entry in spec.faults)
        if name is not None and name not in policy.targets
    ]
    route = spec.load.route
    if route not in policy.routes:
        return [
            *problems,
            Problem(("load", "route"), f"unknown route {route!r}{known(route, policy.routes)}"),
        ]
    targets = _route_targets(policy, route)
    if spec.primary is not None and spec.primary not in targets:
        message = f"{spec.primary!r} is not a target of route {route!r}: {', '.join(targets)}"
        problems.append(Problem(("primary",), message))
    return problems
