"""Prometheus metrics from the router's events (the `metrics` extra: prometheus-client).

    metrics = PrometheusMetrics()
    router = Router.from_file("policy.yaml", on_event=metrics)

| metric | type | labels |
|---|---|---|
| `router_attempts_total` | counter | route, target, outcome (ok, an error kind, or why it was skipped) |
| `router_attempt_duration_seconds` | histogram | target (calls only, not skips) |
| `router_retries_total` | counter | route, target, kind |
| `router_failovers_total` | counter | route, target, kind |
| `router_breaker_state` | gauge | target (0 closed, 1 half-open, 2 open) |
| `router_breaker_transitions_total` | counter | target, state |
| `router_target_health` | gauge | target (1 healthy, 0 unhealthy, -1 unknown) |
| `router_reloads_total` | counter | result (ok, refused) |
| `router_policy_version` | gauge | |
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from router.events import (
    AttemptEvent,
    BreakerTransition,
    Event,
    FailoverEvent,
    HealthEvent,
    ReloadEvent,
    RetryEvent,
)
from router.resilience.breaker import BreakerState
from router.resilience.runtime import Health
from router.results import SKIPS

__all__ = ["PrometheusMetrics"]

_BREAKER = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_HEALTH = {Health.HEALTHY: 1, Health.UNHEALTHY: 0, Health.UNKNOWN: -1}


class PrometheusMetrics:
    """An `on_event` hook that keeps the metrics above in `registry` (default: the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else REGISTRY
        self.attempts = Counter(
            "router_attempts_total", "Attempts by outcome.", ["route", "target", "outcome"], registry=registry
        )
        self.duration = Histogram(
            "router_attempt_duration_seconds", "Duration of calls to a target.", ["target"], registry=registry
        )
        self.retries = Counter(
            "router_retries_total",
            "Retries on the same target.",
            ["route", "target", "kind"],
            registry=registry,
        )
        self.failovers = Counter(
            "router_failovers_total",
            "Moves to the next target.",
            ["route", "target", "kind"],
            registry=registry,
        )
        self.breaker = Gauge(
            "router_breaker_state", "0 closed, 1 half-open, 2 open.", ["target"], registry=registry
        )
        self.transitions = Counter(
            "router_breaker_transitions_total", "Breaker transitions.", ["target", "state"], registry=registry
        )
        self.health = Gauge(
            "router_target_health", "1 healthy, 0 unhealthy, -1 unknown.", ["target"], registry=registry
        )
        self.reloads = Counter("router_reloads_total", "Policy reloads.", ["result"], registry=registry)
        self.version = Gauge("router_policy_version", "The policy version in service.", registry=registry)

    def __call__(self, event: Event) -> None:
        if isinstance(event, AttemptEvent):
            self.attempts.labels(event.route, event.target, event.outcome).inc()
            if event.outcome not in SKIPS:
                self.duration.labels(event.target).observe(event.latency_s)
        elif isinstance(event, RetryEvent):
            self.retries.labels(event.route, event.target, event.kind).inc()
        elif isinstance(event, FailoverEvent):
            self.failovers.labels(event.route, event.target, event.kind).inc()
        elif isinstance(event, BreakerTransition):
            self.breaker.labels(event.target).set(_BREAKER.get(event.new, -1))
            self.transitions.labels(event.target, event.new).inc()
        elif isinstance(event, HealthEvent):
            self.health.labels(event.target).set(_HEALTH.get(event.new, -1))
        elif isinstance(event, ReloadEvent):
            self.reloads.labels("ok" if event.ok else "refused").inc()
            if event.ok:
                self.version.set(event.version)
