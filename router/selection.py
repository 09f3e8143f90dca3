"""Which targets a request may use, and in what order (the route's strategy)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from router.estimates import OutputTokens
from router.policy.compile import RoutePlan, TargetPlan
from router.providers.base import Message, Provider
from router.resilience.breaker import Breaker
from router.resilience.limiter import Limiter
from router.results import Outcome
from router.strategies import Candidate

__all__ = [
    "Health",
    "Request",
    "TargetRuntime",
    "estimate_tokens",
    "misfit",
    "order_candidates",
    "over_budget",
    "unavailable",
]


class Health(StrEnum):
    """A target's health as its probes judge it."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"  # no verdict yet, or the last one expired


# What a target's runtime has learnt, carried over a policy reload.
_HISTORY = (
    "latency",
    "health",
    "health_streak",
    "health_since",
    "drained",
    "recovered_at",
    "last_outcome_at",
    "last_ok",
    "outputs",
)

# Output tokens assumed for the cost estimate when the caller sets no max_tokens.
DEFAULT_OUTPUT_ESTIMATE = 1024
_EWMA_WEIGHT = 0.3


class TargetRuntime:
    """A target's live parts: client, breaker, limiter, observed latency, and what the fleet knows.

    `health` is "unknown" until probes say otherwise; `health_since` (monotonic) dates the
    evidence of the current verdict; `recovered_at` (monotonic) marks the last return from an
    outage (breaker closed again, or health good again), for failback. `in_flight` counts the
    calls in progress on this runtime's client (the engine's and the health probes): a
    replaced client is closed only once it is 0 on every runtime that uses it.
    """

    __slots__ = (
        "__weakref__",  # the router tracks the runtimes of a replaced client without keeping them alive
        "breaker",
        "drained",
        "health",
        "health_since",
        "health_streak",
        "in_flight",
        "last_ok",
        "last_outcome_at",
        "latency",
        "limiter",
        "outputs",
        "plan",
        "provider",
        "recovered_at",
    )

    def __init__(
        self, plan: TargetPlan, provider: Provider, breaker: Breaker, limiter: Limiter | None
    ) -> None:
        self.plan = plan
        self.provider = provider
        self.breaker = breaker
        self.limiter = limiter
        self.latency: float | None = None
        self.health = Health.UNKNOWN
        self.health_streak = 0
        self.health_since: float | None = None
        self.in_flight = 0
        self.drained = False
        self.recovered_at: float | None = None
        self.last_outcome_at: float | None = None
        self.last_ok = True
        self.outputs = OutputTokens()  # what it has been answering, for estimates without max_tokens

    def carried_to(
        self, plan: TargetPlan, provider: Provider, breaker: Breaker, limiter: Limiter | None
    ) -> TargetRuntime:
        """This target under a reloaded policy: the live parts given (kept or new), the same history.

        `in_flight` is not history: it counts this runtime's calls, which finish on it.
        """
        runtime = TargetRuntime(plan, provider, breaker, limiter)
        for name in _HISTORY:
            setattr(runtime, name, getattr(self, name))
        return runtime

    def observe(self, seconds: float) -> None:
        previous = self.latency
        self.latency = seconds if previous is None else previous + _EWMA_WEIGHT * (seconds - previous)

    def outcome(self, ok: bool, now: float) -> None:
        """A real call's verdict on the target: a passive health signal for the prober."""
        self.last_ok = ok
        self.last_outcome_at = now

    def output_estimate(self, request: Request) -> int:
        """Output tokens to reserve for `request` here: its `max_tokens`, else the p90 of this
        target's recent answers (`router.estimates`)."""
        return request.max_tokens if request.max_tokens is not None else self.outputs.estimate


@dataclass(frozen=True, slots=True)
class Request:
    messages: Sequence[Message]
    max_tokens: int | None
    temperature: float | None
    options: Mapping[str, Any]
    input_tokens: int
    streaming: bool
    metadata: Mapping[str, Any] | None = None  # the caller's, for event hooks; never sent upstream

    @property
    def output_estimate(self) -> int:
        return self.max_tokens if self.max_tokens is not None else DEFAULT_OUTPUT_ESTIMATE

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


def order_candidates(
    route: RoutePlan, runtimes: Sequence[TargetRuntime], request: Request, rng: random.Random, now: float
) -> list[TargetRuntime]:
    """The route's targets that fit the request, in the order the strategy prefers.

    Under a `ramp` failback, a recovering target keeps its place with a probability that grows
    from 0 to 1 over the ramp (Envoy's slow start); otherwise it goes last.
    """
    tokens = request.input_tokens, request.output_estimate
    candidates = [
        Candidate(position, runtime.plan, weight, runtime.latency, *tokens)
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


def over_budget(route: RoutePlan, plan: TargetPlan, request: Request) -> str | None:
    """What the request is estimated to cost on the target, when that is over the route's max_cost."""
    estimate = plan.cost(request.input_tokens, request.output_estimate)
    if route.max_cost is None or estimate <= route.max_cost:
        return None
    return f"estimated ${estimate:.6f}, over max_cost ${route.max_cost:g}"
