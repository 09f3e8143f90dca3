"""A target's live parts, owned together: its client, breaker and limiter, and what it has learnt.

`TargetRuntime` is what the engine, the health checker and the fleet act on for one target;
a policy reload carries it over (`carried_to`) with its history while the target stays.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from router.estimates import OutputTokens
from router.policy.compile import TargetPlan
from router.providers.base import Provider
from router.resilience.breaker import Breaker
from router.resilience.limiter import Limiter

if TYPE_CHECKING:
    from router._selection import Request

__all__ = ["Health", "TargetRuntime"]


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
