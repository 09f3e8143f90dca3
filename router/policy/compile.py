"""Policy -> Plan: everything the hot path needs, resolved once and frozen.

A request does one lookup, its route by name; after that it only follows references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

from router.errors import ErrorKind, PolicyError, PolicyIssue
from router.policy.loader import reference_problems
from router.policy.model import (
    Capabilities,
    FailbackMode,
    Policy,
    ProviderSpec,
    RetryBudgetSpec,
    RouteSpec,
    RuleSpec,
    StreamRecovery,
    TargetRef,
    TargetSpec,
)
from router.prices import PriceSource, table_price
from router.strategies import STRATEGIES, Strategy

__all__ = [
    "BudgetPlan",
    "Plan",
    "RoutePlan",
    "RulePlan",
    "TargetPlan",
    "compile_plan",
    "direct_target",
    "rule_value",
    "single_target_route",
]

_PER_MILLION = 1e-6


@dataclass(frozen=True, slots=True)
class TargetPlan:
    name: str
    provider: str
    model: str
    input_price: float  # USD per token
    output_price: float
    context_window: int | None
    streaming: bool
    tools: bool
    prefill: bool
    tier: str
    price_source: PriceSource = "policy"
    window_source: Literal["policy", "listing", "unknown"] = "policy"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_price + output_tokens * self.output_price


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """A budget as a token bucket of dollars: `usd` of capacity, refilled over `period` seconds."""

    name: str
    usd: float
    period: float
    per: str
    raise_when_spent: bool
    tiers: frozenset[str]  # the tiers of the route's targets it covers

    def covers(self, target: TargetPlan) -> bool:
        return target.tier in self.tiers


@dataclass(frozen=True, slots=True)
class RulePlan:
    """A route's rule: when every key of `when` holds one of its values (`rule_value` of each), the
    request goes to `targets` (with `strategy`, None: the route's); `route` is the route so changed,
    compiled once."""

    index: int
    when: tuple[tuple[str, frozenset[str]], ...]
    targets: tuple[TargetPlan, ...]
    weights: tuple[float, ...]
    strategy: Strategy | None
    route: RoutePlan

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        # No regex, no parsing: one dict lookup and one set lookup per condition.
        for key, values in self.when:
            value = metadata.get(key)
            if value is None:
                return False
            if isinstance(value, list | tuple):  # tags, as LiteLLM's: any of them will do
                if not any(rule_value(item) in values for item in value):
                    return False
            elif rule_value(value) not in values:
                return False
        return True


def rule_value(value: Any) -> str:
    """The one text a metadata value and a rule's value are compared as: `true` in YAML, True in
    Python and "true" in a header all match; a mapping matches nothing."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return "\x00"  # no rule value is this


@dataclass(frozen=True, slots=True)
class RoutePlan:
    name: str
    targets: tuple[TargetPlan, ...]
    weights: tuple[float, ...]
    strategy: Strategy
    total: float
    per_attempt: float | None
    first_token: float | None
    idle: float | None
    hedge_after: float | None
    max_cost: float | None
    stream_recovery: StreamRecovery | None
    attempts: int
    backoff_base: float
    backoff_max: float
    jitter: bool
    honor_retry_after: bool
    retry_on: frozenset[ErrorKind]
    failover_on: frozenset[ErrorKind]
    failback_mode: FailbackMode = "immediate"
    failback_probes: int = 2
    failback_for: float = 0.0
    failback_ramp: float = 60.0
    budgets: tuple[BudgetPlan, ...] = ()
    rules: tuple[RulePlan, ...] = ()
    # When every rule has a condition on one key: that key, and for each of its values the rules
    # (in order) that hold it, so a request tries only those (one dict lookup, then their rest).
    rule_index: tuple[str, Mapping[str, tuple[RulePlan, ...]]] | None = None

    def rule_for(self, metadata: Mapping[str, Any] | None) -> RulePlan | None:
        """The first rule the metadata matches, or None: the route's own targets."""
        if not metadata:
            return None
        candidates: Sequence[RulePlan] = self.rules
        if self.rule_index is not None:
            key, by_value = self.rule_index
            value = metadata.get(key)
            if isinstance(value, list | tuple):
                held = {rule.index: rule for item in value for rule in by_value.get(rule_value(item), ())}
                candidates = [held[index] for index in sorted(held)]
            else:
                candidates = () if value is None else by_value.get(rule_value(value), ())
        for rule in candidates:
            if rule.matches(metadata):
                return rule
        return None

    @property
    def names(self) -> frozenset[str]:
        """The targets a request on this route may name: the route's and its rules'."""
        return frozenset(t.name for t in self.targets) | {t.name for r in self.rules for t in r.targets}

    @property
    def stream_upstream(self) -> bool:
        """complete() streams from the provider when it must watch the first token or the gaps."""
        return self.first_token is not None or self.idle is not None


@dataclass(frozen=True, slots=True)
class Plan:
    routes: Mapping[str, RoutePlan]
    targets: Mapping[str, TargetPlan]
    providers: Mapping[str, ProviderSpec]
    retry_budget: RetryBudgetSpec


def compile_plan(policy: Policy, source: str = "<policy>") -> Plan:
    problems = reference_problems(policy)
    if problems:
        raise PolicyError([PolicyIssue(source, 0, 0, path, message) for path, message in problems])
    targets = {
        name: _target(name, spec, policy.providers[spec.provider]) for name, spec in policy.targets.items()
    }
    routes = {name: _route(name, route, targets, policy) for name, route in policy.routes.items()}
    for alias, name in policy.aliases.items():
        # A target's alias routes to that target alone, with the default route settings.
        routes[alias] = routes[name] if name in policy.routes else single_target_route(alias, targets[name])
    return Plan(
        routes=MappingProxyType(routes),
        targets=MappingProxyType(targets),
        providers=MappingProxyType(dict(policy.providers)),
        retry_budget=policy.retry_budget,
    )


def _target(name: str, spec: TargetSpec, provider: ProviderSpec) -> TargetPlan:
    source: PriceSource = "policy"
    per_input, per_output = (spec.price.input, spec.price.output) if spec.price else (0.0, 0.0)
    if spec.price is None:
        known = table_price(provider.type, spec.model)
        source = "unknown" if known is None else "genai-prices"
        if known is not None:
            per_input, per_output = known.input, known.output
    return TargetPlan(
        name=name,
        provider=spec.provider,
        model=spec.model,
        input_price=per_input * _PER_MILLION,
        output_price=per_output * _PER_MILLION,
        context_window=spec.context_window,
        streaming=spec.capabilities.streaming,
        tools=spec.capabilities.tools,
        prefill=spec.capabilities.prefill,
        tier=spec.tier,
        price_source=source,
        window_source="unknown" if spec.context_window is None else "policy",
    )


def direct_target(provider: str, spec: ProviderSpec, model: str) -> TargetPlan:
    """The target of a `provider:model` address: nothing declared, so no window and no capability
    filtered out; its price is the table's, if it has one."""
    return _target(
        f"{provider}:{model}",
        TargetSpec(
            provider=provider,
            model=model,
            capabilities=Capabilities(streaming=True, tools=True, prefill=True),
            tier="direct",
        ),
        spec,
    )


def single_target_route(name: str, target: TargetPlan) -> RoutePlan:
    """A route to one target with the default settings (aliases and direct `provider:model` calls)."""
    return _route(name, RouteSpec(targets=[target.name]), {target.name: target})


def _budgets(name: str, chain: tuple[TargetPlan, ...], policy: Policy | None) -> tuple[BudgetPlan, ...]:
    if policy is None:
        return ()
    tiers = {target.tier for target in chain}
    # A route's budget spares its cheapest tier: that is where its traffic shifts when it is spent.
    cheapest = min(chain, key=lambda t: t.input_price + t.output_price).tier
    plans = []
    for budget_name, spec in policy.budgets.items():
        if spec.route == name:
            covered = frozenset(tiers) if spec.when_spent == "raise" else frozenset(tiers - {cheapest})
        elif spec.tier in tiers:
            covered = frozenset({spec.tier})
        else:
            continue
        period = 3600.0 if spec.per == "hour" else 86400.0
        plans.append(BudgetPlan(budget_name, spec.usd, period, spec.per, spec.when_spent == "raise", covered))
    return tuple(plans)


def _route(
    name: str, route: RouteSpec, targets: Mapping[str, TargetPlan], policy: Policy | None = None
) -> RoutePlan:
    chain, weights = _chain(route.targets, targets)
    rule_chains = [_chain(rule.targets, targets) for rule in route.rules]
    # The budgets cover every target the route may send a request to, its rules' too.
    reach = chain + tuple(t for ruled, _ in rule_chains for t in ruled if t not in chain)
    budget, retry = route.latency_budget, route.retry
    plan = RoutePlan(
        name=name,
        targets=chain,
        weights=weights,
        strategy=STRATEGIES[route.strategy],
        total=budget.total,
        per_attempt=budget.per_attempt,
        first_token=budget.first_token,
        idle=budget.idle,
        hedge_after=route.hedge_after,
        max_cost=route.max_cost,
        stream_recovery=route.stream_recovery,
        attempts=retry.attempts,
        backoff_base=retry.backoff_base,
        backoff_max=retry.backoff_max,
        jitter=retry.jitter == "full",
        honor_retry_after=retry.honor_retry_after,
        retry_on=frozenset(retry.on),
        failover_on=frozenset(route.failover.on),
        failback_mode=route.failback.mode,
        failback_probes=route.failback.healthy_probes,
        failback_for=route.failback.healthy_for,
        failback_ramp=route.failback.ramp,
        budgets=_budgets(name, reach, policy),
    )
    if not route.rules:
        return plan
    specs = enumerate(zip(route.rules, rule_chains, strict=True))
    rules = tuple(_rule(index, spec, ruled, plan) for index, (spec, ruled) in specs)
    return replace(plan, rules=rules, rule_index=_rule_index(rules))


def _chain(
    entries: list[str | TargetRef], targets: Mapping[str, TargetPlan]
) -> tuple[tuple[TargetPlan, ...], tuple[float, ...]]:
    refs = [entry if isinstance(entry, TargetRef) else TargetRef(target=entry) for entry in entries]
    return tuple(targets[ref.target] for ref in refs), tuple(ref.weight for ref in refs)


def _rule(
    index: int, rule: RuleSpec, chain: tuple[tuple[TargetPlan, ...], tuple[float, ...]], base: RoutePlan
) -> RulePlan:
    when = tuple(
        (key, frozenset(rule_value(v) for v in (value if isinstance(value, list) else [value])))
        for key, value in rule.when.items()
    )
    targets, weights = chain
    strategy = STRATEGIES[rule.strategy] if rule.strategy is not None else None
    route = replace(base, targets=targets, weights=weights, strategy=strategy or base.strategy)
    return RulePlan(index, when, targets, weights, strategy, route)


def _rule_index(rules: tuple[RulePlan, ...]) -> tuple[str, Mapping[str, tuple[RulePlan, ...]]] | None:
    """The first key every rule has a condition on, and the rules by each of its values; None if none."""
    keys = [key for key, _ in rules[0].when if all(key in dict(rule.when) for rule in rules)]
    if not keys:
        return None
    by_value: dict[str, list[RulePlan]] = {}
    for rule in rules:
        for value in dict(rule.when)[keys[0]]:
            by_value.setdefault(value, []).append(rule)
    return keys[0], MappingProxyType({value: tuple(held) for value, held in by_value.items()})
