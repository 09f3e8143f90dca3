"""Where a route's traffic is expected to go, and what 1,000 requests of a given size cost.

The model: every request goes to the first candidate the strategy offers that is available
(breaker not open, not drained, not unhealthy); `weighted` splits by weight among the
available ones. Failovers caused by errors are not modelled: this is the split when the
targets answer. `router explain --traffic` prints it; `router diff` compares two policies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from router.policy.compile import Plan, RoutePlan, TargetPlan

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
    pairs = [(t, w) for t, w in zip(route.targets, route.weights, strict=True) if t.name not in unavailable]
    shares: dict[str, float] = {}
    if pairs and route.strategy == "weighted":
        total = sum(weight for _, weight in pairs)
        shares = {target.name: weight / total for target, weight in pairs}
    elif pairs:
        first = _first(route.strategy, [t for t, _ in pairs], input_tokens, output_tokens, latency)
        shares = {first.name: 1.0}
    costs = {target.name: target.cost(input_tokens, output_tokens) for target in route.targets}
    cost = 1000 * sum(share * costs[name] for name, share in shares.items())
    skipped = tuple(t.name for t in route.targets if t.name in unavailable)
    return RouteTraffic(route.name, shares, cost, skipped)


def _first(
    strategy: str,
    targets: list[TargetPlan],
    input_tokens: int,
    output_tokens: int,
    latency: Mapping[str, float],
) -> TargetPlan:
    if strategy == "cheapest":
        return min(targets, key=lambda t: t.cost(input_tokens, output_tokens))
    if strategy == "fastest":
        return min(targets, key=lambda t: latency.get(t.name, 0.0))
    return targets[0]
