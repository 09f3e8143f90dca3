"""Where a route's traffic is expected to go, and what 1,000 requests of a given size cost.

The model: every request goes to the first candidate the strategy offers that is available
(breaker not open, not drained, not unhealthy); `weighted` splits by weight among the
available ones. Failovers caused by errors are not modelled: this is the split when the
targets answer. `router explain --traffic` prints it; `router diff` compares two policies.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from router.policy.compile import Plan, RoutePlan
from router.strategies import Candidate, Strategy

__all__ = ["RouteTraffic", "expected_traffic"]


@dataclass(frozen=True, slots=True)
class RouteTraffic:
    route: str
    shares: Mapping[str, float]  # target -> fraction of requests
    cost_per_1000: float  # USD
    unavailable: tuple[str, ...] = ()


def expected_traffic(
    plan: Plan,
    *,
    input_tokens: int,
    output_tokens: int,
    unavailable: Collection[str] = (),
    latency: Mapping[str, float] | None = None,
) -> list[RouteTraffic]:
    """The expected split of every route of `plan`, for requests of the given size."""
    return [
        _route(route, input_tokens, output_tokens, unavailable, latency or {})
        for route in plan.routes.values()
    ]


def _route(
    route: RoutePlan,
    input_tokens: int,
    output_tokens: int,
    unavailable: Collection[str],
    latency: Mapping[str, float],
) -> RouteTraffic:
    candidates = [
        Candidate(position, target, weight, latency.get(target.name), input_tokens, output_tokens)
        for position, (target, weight) in enumerate(zip(route.targets, route.weights, strict=True))
        if target.name not in unavailable
    ]
    shares = _shares(route.strategy, candidates) if candidates else {}
    costs = {target.name: target.cost(input_tokens, output_tokens) for target in route.targets}
    cost = 1000 * sum(share * costs[name] for name, share in shares.items())
    skipped = tuple(t.name for t in route.targets if t.name in unavailable)
    return RouteTraffic(route.name, shares, cost, skipped)


def _shares(strategy: Strategy, candidates: list[Candidate]) -> dict[str, float]:
    """The share of requests each target gets first; a strategy without `shares` orders the same
    way every time (the random generator is a formality), so its first target gets them all."""
    if strategy.shares is not None:
        shares = strategy.shares(candidates)
        return {c.target.name: share for c, share in zip(candidates, shares, strict=True)}
    ordered = strategy.order(candidates, random.Random(0))
    return {ordered[0].target.name: 1.0} if ordered else {}
