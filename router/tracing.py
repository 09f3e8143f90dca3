"""OpenTelemetry spans from the router's events (the `otel` extra: opentelemetry-api).

    router = Router.from_file("policy.yaml", on_event=OpenTelemetrySpans())

Each attempt becomes a span `router.attempt` (timed from the event's latency, ending when the
event arrives) with the attributes `router.route`, `router.target`, `router.provider`,
`router.model`, `router.outcome` and, on failure, `router.error` and an error status.
Retries, failovers, breaker transitions and reloads become span events on the current span.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from router.events import AttemptEvent, Event
from router.results import Outcome

__all__ = ["OpenTelemetrySpans"]

_NS = 1_000_000_000


class OpenTelemetrySpans:
    """An `on_event` hook that records spans with `tracer` (default: this module's tracer)."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._tracer = tracer or trace.get_tracer("router")

    def __call__(self, event: Event) -> None:
        if not isinstance(event, AttemptEvent):
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(f"router.{type(event).__name__}", _attributes(event))
            return
        end = time.time_ns()
        span = self._tracer.start_span(
            "router.attempt",
            start_time=end - int(event.latency_s * _NS),
            attributes={
                "router.route": event.route,
                "router.target": event.target,
                "router.provider": event.provider,
                "router.model": event.model,
                "router.outcome": event.outcome,
            },
        )
        if event.error is not None:
            span.set_attribute("router.error", event.error)
        if event.outcome != Outcome.OK:
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.outcome))
        span.end(end_time=end)


def _attributes(event: Event) -> dict[str, str | float | int | bool]:
    values: dict[str, str | float | int | bool] = {}
    for name in getattr(event, "__slots__", ()):
        value = getattr(event, name)
        if isinstance(value, str | float | int | bool):
            values[f"router.{name}"] = value
    return values
