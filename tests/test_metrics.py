"""Prometheus metrics, fed by a router's events."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from router import ErrorKind, Router
from router.metrics import PrometheusMetrics
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

from .engine.conftest import USER, build_policy


async def test_attempts_retries_failovers_and_breakers_are_counted():
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    clock = FakeClock()
    p1, p2 = ScriptedProvider("p1", clock=clock), ScriptedProvider("p2", clock=clock)
    p1.script("a", Step.fail(ErrorKind.SERVER_ERROR), Step.fail(ErrorKind.SERVER_ERROR))
    policy = build_policy(breaker={"fail_max": 2})
    router = Router(policy, clock=clock, providers={"p1": p1, "p2": p2}, on_event=metrics)
    await router.complete("chat", USER)
    await router.complete("chat", USER)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("router_attempts_total", route="chat", target="a", outcome="server_error") == 2
    assert value("router_attempts_total", route="chat", target="b", outcome="ok") == 2
    assert value("router_attempts_total", route="chat", target="a", outcome="breaker_open") == 1
    assert value("router_retries_total", route="chat", target="a", kind="server_error") == 1
    assert value("router_failovers_total", route="chat", target="a", kind="server_error") == 1
    assert value("router_breaker_state", target="a") == 2
    assert value("router_breaker_transitions_total", target="a", state="open") == 1
    assert value("router_attempt_duration_seconds_count", target="b") == 2
    router.reload(policy)
    assert value("router_reloads_total", result="ok") == 1 and value("router_policy_version") == 2
