"""Policy text -> a validated `Policy`, or a `PolicyError` that locates every problem.

The document pipeline (`router.policy.document`: YAML with locations, `${VAR}` interpolation,
the pydantic models, issues located and phrased for a person editing YAML, secrets hidden)
with the policy's own checks: cross-references (route -> target -> provider) and, when asked,
the credentials the environment must hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from router.errors import PolicyError, PolicyIssue
from router.policy.document import Problem, known, validate_document
from router.policy.model import BudgetSpec, Policy, ProviderSpec, RouteSpec, TargetRef, TargetSpec
from router.policy.source import Path, dotted, read_file, read_source

__all__ = ["load_policy", "parse_policy", "policy_json_schema", "reference_problems", "unchecked_windows"]

_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def load_policy(path: str | os.PathLike[str], *, environment: bool = False) -> Policy:
    """Read and validate a policy file; `${VAR}` references are taken from `os.environ`.

    `environment`: also check that the environment holds what every provider needs to
    authenticate (see `parse_policy`). Raises `PolicyError` for a file that is too large or not
    UTF-8 as for any other issue, `OSError` if it cannot be read.
    """
    return parse_policy(read_file(path), os.fspath(path), environment=environment)


def parse_policy(
    text: str, filename: str = "<policy>", env: Mapping[str, str] | None = None, *, environment: bool = False
) -> Policy:
    """Validate a policy given as YAML text; raise `PolicyError` listing every issue found.

    `environment`: also report every API key and AWS credential that neither the policy nor `env`
    provides, each at its provider; otherwise they are looked for when the router starts.
    """
    env = os.environ if env is None else env

    def checks(policy: Policy) -> list[Problem]:
        problems = [Problem(path, message) for path, message in _references(policy)]
        return problems + _environment_problems(policy, env) if environment else problems

    validated = validate_document(Policy, read_source(text, filename), env, checks=checks, validate=_validate)
    if isinstance(validated, Policy):
        return validated
    raise PolicyError(validated)


def unchecked_windows(policy: Policy, text: str, filename: str = "<policy>") -> list[PolicyIssue]:
    """A warning for each target of `policy` (read from `text`) that declares no context window: a
    request too large for it is not skipped but sent, and refused by the provider (a failover)."""
    source = read_source(text, filename)
    warnings = []
    for name, target in policy.targets.items():
        if target.context_window is None:
            where = source.keys.get(("targets", name)) or source.values[()]
            message = f"warning: target {name!r} declares no context_window, so its window is unchecked"
            field = f"targets.{name}.context_window"
            warnings.append(PolicyIssue(filename, where.line, where.column, field, message))
    return warnings


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editors that complete and check YAML."""
    return {"$schema": _JSON_SCHEMA_DIALECT, **Policy.model_json_schema(), "title": "router policy"}


def reference_problems(policy: Policy) -> list[tuple[str, str]]:
    """Names that point nowhere, as (dotted path, message): route targets, target providers, aliases."""
    return [(dotted(path), message) for path, message in _references(policy)]


def _references(policy: Policy) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    for name, target in policy.targets.items():
        if target.provider not in policy.providers:
            message = f"unknown provider {target.provider!r}{known(target.provider, policy.providers)}"
            problems.append((("targets", name, "provider"), message))
    for route_name, route in policy.routes.items():
        chains: list[tuple[Path, list[str | TargetRef]]] = [(("routes", route_name), route.targets)]
        chains += [
            (("routes", route_name, "rules", i), rule.targets)
            for i, rule in enumerate(route.rules)
        ]
        for at, chain in chains:
            problems += _unknown_targets(policy, at, chain)
    tiers = {target.tier: None for target in policy.targets.values()}
    for name, budget in policy.budgets.items():
        if budget.route is not None and budget.route not in policy.routes:
            message = f"unknown route {budget.route!r}{known(budget.route, policy.routes)}"
            problems.append((("budgets", name, "route"), message))
        if budget.tier is not None and budget.tier not in tiers:
            message = f"no target is in tier {budget.tier!r}{known(budget.tier, tiers)}"
            problems.append((("budgets", name, "tier"), message))
    names = {**policy.routes, **policy.targets}
    for alias, name in policy.aliases.items():
        where = ("aliases", alias)
        if alias in policy.routes:
            problems.append((where, f"alias {alias!r} hides the route of the same name"))
        elif name not in names:
            problems.append((where, f"{name!r} is neither a route nor a target{known(name, names)}"))
    return problems + _unknown_key_routes(policy)


def _unknown_key_routes(policy: Policy) -> list[tuple[Path, str]]:
    """A gateway key's `routes` that no request could name: not a route, an alias or `provider:model`."""
    names = {**policy.routes, **policy.aliases}
    problems: list[tuple[Path, str]] = []
    for key_name, key in (policy.gateway.keys if policy.gateway is not None else {}).items():
        for index, name in enumerate(key.routes or ()):
            provider, colon, _ = name.partition(":")
            if name not in names and not (colon and provider in policy.providers):
                message = f"{name!r} is not a route, an alias or provider:model{known(name, names)}"
                problems.append((("gateway", "keys", key_name, "routes", index), message))
    return problems


def _unknown_targets(policy: Policy, at: Path, chain: list[str | TargetRef]) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    for index, entry in enumerate(chain):
        path: Path = (*at, "targets", index)
        name = entry if isinstance(entry, str) else entry.target
        if name not in policy.targets:
            where = path if isinstance(entry, str) else (*path, "target")
            problems.append((where, f"unknown target {name!r}{known(name, policy.targets)}"))
    return problems


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


def _environment_problems(policy: Policy, env: Mapping[str, str]) -> list[Problem]:
    # Imported here: the providers import the policy's models.
    from router.providers.credentials import missing_credentials

    return [
        Problem(("providers", name, field), message, at_key=True)
        for name, spec in policy.providers.items()
        for field, message in missing_credentials(spec, env)
    ]
