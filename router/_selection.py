"""Which targets a request may use, and in what order (the route's strategy)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router.control import Control
from router.policy.compile import RoutePlan, TargetPlan
from router.providers.base import Message
from router.resilience.runtime import Health, TargetRuntime
from router.results import Outcome
from router.strategies import STRATEGIES, Candidate

__all__ = [
    "Request",
    "estimate_tokens",
    "misfit",
    "order_candidates",
    "over_budget",
    "shaped",
    "unavailable",
]


# Output tokens assumed for the cost estimate when the caller sets no max_tokens.

@dataclass(frozen=True, slots=True)
class Request:
    messages: Sequence[Message]
    max_tokens: int | None
    temperature: float | None
    options: Mapping[str, Any]
    input_tokens: int
    streaming: bool
    metadata: Mapping[str, Any] | None = None  # the caller's, for rules and event hooks; never sent upstream
    control: Control | None = None  # the caller's changes to the route, checked against it already

    @property
    def wants_tools(self) -> bool:
        return "tools" in self.options

    @property
    def prefill(self) -> bool:
        """A trailing assistant message asks the model to continue it."""
        return bool(self.messages) and self.messages[-1].get("role") == "assistant"


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A cheap upper-leaning estimate (4 characters a token, plus framing); usage corrects it later."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part.get("text", "")) for part in content if isinstance(part, dict))
    return chars // 4 + 4 * len(messages) + 1


def misfit(plan: TargetPlan, request: Request) -> tuple[Outcome, str] | None:
    """Why the target cannot take the request at all (an attempt outcome and a detail), or None."""
    if request.streaming and not plan.streaming:
        return Outcome.UNSUPPORTED, "does not stream"
    if request.wants_tools and not plan.tools:
        return Outcome.UNSUPPORTED, "takes no tools"
    if request.prefill and not plan.prefill:
        return Outcome.UNSUPPORTED, "takes no assistant prefill"
    window, needed = plan.context_window, request.input_tokens + (request.max_tokens or 0)
    if window is not None and needed > window:
        return Outcome.WINDOW_TOO_SMALL, f"needs about {needed} tokens, its window is {window}"
    return None


def shaped(route: RoutePlan, request: Request, target: Callable[[str], TargetPlan]) -> RoutePlan:
    """The route as this request takes it: the targets of the first rule its metadata matches (compiled
    with the plan), then the caller's `Control` (targets named in the order given, found by `target`;
    attempts; the tighter max_cost; stream recovery). The route itself when neither changes anything."""
    rule = route.rule_for(request.metadata) if route.rules else None
    base = route if rule is None else rule.route
    control = request.control
    if control is None:
        return base
    key = (id(base), control)
    hit = _CONTROLLED.get(key)
    if hit is not None and hit[0] is base:  # the entry holds `base`: its id is no other route's
        return hit[1]
    controlled = _controlled(route, base, control, target)
    if len(_CONTROLLED) >= _CONTROLLED_MAX:
        _CONTROLLED.clear()
    _CONTROLLED[key] = (base, controlled)
    return controlled


# Routes as recent controls changed them: callers (a gateway's, say) repeat their controls, and a
# copy of a RoutePlan costs about as much as the rest of the router's work on a request.
_CONTROLLED: dict[tuple[int, Control], tuple[RoutePlan, RoutePlan]] = {}
_CONTROLLED_MAX = 1024


def _controlled(
    route: RoutePlan, base: RoutePlan, control: Control, target: Callable[[str], TargetPlan]
) -> RoutePlan:
    changes: dict[str, Any] = {}
    if control.targets is not None:
        weights = dict(zip(route.targets, route.weights, strict=True))
        weights.update((t, w) for r in route.rules for t, w in zip(r.targets, r.weights, strict=True))
        chain = tuple(target(name) for name in control.targets)
        # The caller's order is the order: that is what naming the targets asks for.
        ordered = STRATEGIES["ordered"]
        changes.update(targets=chain, weights=tuple(weights.get(t, 1.0) for t in chain), strategy=ordered)
    if control.attempts is not None:
        changes["attempts"] = control.attempts
    if control.max_cost is not None:
        tighter = control.max_cost if route.max_cost is None else min(route.max_cost, control.max_cost)
        changes["max_cost"] = tighter
    if control.stream_recovery is not None:
        changes["stream_recovery"] = control.stream_recovery
    return dataclasses.replace(base, **changes) if changes else base


def order_candidates(
    route: RoutePlan, runtimes: Sequence[TargetRuntime], request: Request, rng: random.Random, now: float
) -> list[TargetRuntime]:
    """The route's targets that fit the request, in the order the strategy prefers.

    Under a `ramp` failback, a recovering target keeps its place with a probability that grows
    from 0 to 1 over the ramp (Envoy's slow start); otherwise it goes last.
    """
    # Each target priced at the output it has been answering (`TargetRuntime.output_estimate`).
    tokens = request.input_tokens
    candidates = [
        Candidate(position, runtime.plan, weight, runtime.latency, tokens, runtime.output_estimate(request))
        for position, (runtime, weight) in enumerate(zip(runtimes, route.weights, strict=True))
    ]
    ordered = [runtimes[candidate.position] for candidate in route.strategy.order(candidates, rng)]
    fitting = [runtime for runtime in ordered if misfit(runtime.plan, request) is None]
    if route.failback_mode == "ramp":
        demoted = [r for r in fitting if _ramp_demotes(r, route, now, rng)]
        if demoted:
            fitting = [r for r in fitting if r not in demoted] + demoted
    return fitting


def _ramp_demotes(runtime: TargetRuntime, route: RoutePlan, now: float, rng: random.Random) -> bool:
    recovered = runtime.recovered_at
    if recovered is None or now - recovered >= route.failback_ramp:
        return False
    share = (now - recovered) / route.failback_ramp
    return rng.random() >= share


def unavailable(runtime: TargetRuntime, route: RoutePlan, now: float) -> Outcome | None:
    """Why the target must be skipped now without a call (an attempt outcome), or None."""
    if runtime.drained:
        return Outcome.DRAINED
    if runtime.health == Health.UNHEALTHY and not _closed_since_verdict(runtime):
        return Outcome.UNHEALTHY
    recovered = runtime.recovered_at
    if recovered is not None and route.failback_mode == "after":
        # Without probes (health unknown) only the time counts.
        probes_short = runtime.health != Health.UNKNOWN and runtime.health_streak < route.failback_probes
        if now - recovered < route.failback_for or probes_short:
            return Outcome.RECOVERING
    return None


def _closed_since_verdict(runtime: TargetRuntime) -> bool:
    """Did the breaker close again after the unhealthy verdict? That is newer evidence, from the real path.

    So health never locks out a target whose breaker (or health's completion probe) proved it works.
    """
    recovered, since = runtime.recovered_at, runtime.health_since
    return recovered is not None and since is not None and recovered > since


def over_budget(route: RoutePlan, runtime: TargetRuntime, request: Request) -> str | None:
    """What the request is estimated to cost on the target (at the output it has been answering, as
    admission reserves), when that is over the route's max_cost."""
    estimate = runtime.plan.cost(request.input_tokens, runtime.output_estimate(request))
    if route.max_cost is None or estimate <= route.max_cost:
        return None
    return f"estimated ${estimate:.6f}, over max_cost ${route.max_cost:g}"
