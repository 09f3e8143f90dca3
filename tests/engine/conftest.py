"""Routers over in-process scripted providers, in virtual time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from router import BreakerTransition, Event, Policy, Router
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider

USER = [{"role": "user", "content": "Hello there"}]


def build_policy(
    route: dict[str, Any] | None = None,
    *,
    targets: dict[str, Any] | None = None,
    breaker: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    retry_budget: dict[str, Any] | None = None,
    **sections: Any,
) -> Policy:
    """Two providers (p1, p2), targets a/b/c on models of the same names, one route `chat`."""
    provider: dict[str, Any] = {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    if breaker:
        provider["breaker"] = breaker
    if limits:
        provider["limits"] = limits
    data: dict[str, Any] = {
        "providers": {"p1": provider, "p2": dict(provider)},
        "targets": targets
        or {
            "a": {"provider": "p1", "model": "a", "price": {"input": 1.0, "output": 2.0}},
            "b": {"provider": "p2", "model": "b", "price": {"input": 0.5, "output": 1.0}},
            "c": {"provider": "p2", "model": "c"},
        },
        "routes": {"chat": {"targets": ["a", "b"], "retry": {"backoff_base": "100ms"}, **(route or {})}},
    }
    if retry_budget:
        data["retry_budget"] = retry_budget
    return Policy.model_validate(data | sections)


def transitions_into(transitions: list[Any]) -> Callable[[Event], None]:
    """An `on_event` hook that keeps the breaker transitions."""

    def hook(event: Event) -> None:
        if isinstance(event, BreakerTransition):
            transitions.append(event)

    return hook


class Rig:
    def __init__(self, policy: Policy, clock: FakeClock, **kwargs: Any) -> None:
        self.clock = clock
        self.p1 = ScriptedProvider("p1", clock=clock)
        self.p2 = ScriptedProvider("p2", clock=clock)
        self.transitions: list[Any] = []
        self.router = Router(
            policy,
            clock=clock,
            providers={"p1": self.p1, "p2": self.p2},
            seed=7,
            on_event=transitions_into(self.transitions),
            **kwargs,
        )

    def script(self, model: str, *steps: Any) -> None:
        (self.p1 if model == "a" else self.p2).script(model, *steps)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rig(clock: FakeClock):
    def make(route: dict[str, Any] | None = None, **kwargs: Any) -> Rig:
        return Rig(build_policy(route, **kwargs), clock)

    return make
