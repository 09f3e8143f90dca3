"""OpenTelemetry spans from a router's events."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from router import ErrorKind, Router
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step
from router.tracing import OpenTelemetrySpans

from .engine.conftest import USER, build_policy


async def test_every_attempt_is_a_span_with_its_outcome():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = OpenTelemetrySpans(provider.get_tracer("test"))
    clock = FakeClock()
    p1, p2 = ScriptedProvider("p1", clock=clock), ScriptedProvider("p2", clock=clock)
    p1.script("a", Step.fail(ErrorKind.AUTH, status=401, message="denied"))
    router = Router(build_policy(), clock=clock, providers={"p1": p1, "p2": p2}, on_event=spans)
    await router.complete("chat", USER)
    finished = exporter.get_finished_spans()
    assert [(s.attributes["router.target"], s.attributes["router.outcome"]) for s in finished] == [
        ("a", "auth"),
        ("b", "ok"),
    ]
    assert (
        finished[0].status.status_code is StatusCode.ERROR
        and finished[0].attributes["router.error"] == "denied"
    )
    assert finished[1].status.status_code is StatusCode.UNSET
    assert all(s.attributes["router.route"] == "chat" and s.end_time >= s.start_time for s in finished)
