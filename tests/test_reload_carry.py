"""A reload keeps what targets learnt when their provider's settings change, and closes replaced clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import ErrorKind, Policy, Router
from router.providers.base import Provider
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

USER = [{"role": "user", "content": "hi"}]
GRACE = 60.0  # the default total budget of a request: how long an old plan may still start calls


def policy(**p1: Any) -> Policy:
    """Targets a (provider p1, whose settings the tests change) and b (p2); route chat: a, then b."""
    return Policy.model_validate(
        {
            "providers": {
                "p1": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", **p1},
                "p2": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
            },
            "targets": {"a": {"provider": "p1", "model": "a"}, "b": {"provider": "p2", "model": "b"}},
            "routes": {"chat": {"targets": ["a", "b"], "retry": {"attempts": 1}}},
        }
    )


class Client(ScriptedProvider):
    """A client double that counts how often it is closed."""

    def __init__(self, name: str, clock: FakeClock) -> None:
        super().__init__(name, clock=clock)
        self.closes = 0

    async def aclose(self) -> None:
        self.closes += 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> list[Client]:
    """Every client the router builds, in order (the initial p1 and p2, then one p1 per reload); built
    at once, in place of the clients built on first call (`router.providers.lazy`), whose closing
    `tests/providers/test_lazy.py` covers."""
    clients: list[Client] = []

    def build(name: str, spec: Any, **kwargs: Any) -> Provider:
        clients.append(Client(name, clock))
        return clients[-1]

    monkeypatch.setattr("router._router.on_first_call", build)
    return clients


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def past_the_grace(clock: FakeClock) -> None:
    await settle()  # the closers start waiting
    clock.advance(GRACE)
    await settle()


async def test_a_dead_target_stays_out_when_its_provider_settings_change(clock):
    p1, p2 = ScriptedProvider("p1", clock=clock), ScriptedProvider("p2", clock=clock)
    router = Router(policy(breaker={"fail_max": 1}), clock=clock, providers={"p1": p1, "p2": p2})
    p1.script("a", Step.fail(ErrorKind.SERVER_ERROR))
    await router.complete("chat", USER)  # a's breaker opens
    router.reload(policy(breaker={"fail_max": 1}, headers={"x-team": "search"}, connect_timeout="2s"))
    router.reload(policy(breaker={"fail_max": 3}, headers={"x-team": "search"}, connect_timeout="2s"))
    result = await router.complete("chat", USER)
    assert [(x.target, x.outcome) for x in result.attempts] == [("a", "breaker_open"), ("b", "ok")]
    assert p1.count("a") == 1


async def test_what_stays_and_what_is_new_when_a_provider_changes(clock, built):
    router = Router(policy(limits={"rpm": 600}), clock=clock)
    before = router._runtimes["a"]
    before.observe(0.25)
    before.health_since = 123.0
    router.reload(policy(limits={"rpm": 600}, headers={"x-team": "search"}))
    after = router._runtimes["a"]
    assert after.provider is built[-1] is not before.provider  # a new client for the new headers
    assert (after.breaker, after.limiter) == (before.breaker, before.limiter)
    assert (after.latency, after.health_since) == (0.25, 123.0)
    router.reload(policy(limits={"rpm": 1200}, headers={"x-team": "search"}))
    assert router._runtimes["a"].limiter is not before.limiter  # new limits: a new limiter
    assert router._runtimes["a"].breaker is before.breaker
    router.reload(policy(limits={"rpm": 1200}, headers={"x-team": "search"}, breaker={"fail_max": 2}))
    # A new breaker section: the same breaker under the new rule (its state and the history stay).
    assert router._runtimes["a"].breaker is before.breaker
    assert before.breaker.rule.consecutive == 2
    assert router._runtimes["a"].latency == 0.25
    await router.aclose()


async def test_every_replaced_client_is_closed_once_no_request_can_use_it(clock, built):
    router = Router(policy(), clock=clock)
    assert (await router.complete("chat", USER)).target == "a"
    for n in range(20):
        router.reload(policy(headers={"x-reload": str(n)}))
    current = built[-1]
    replaced = [client for client in built if client.name == "p1" and client is not current]
    assert len(replaced) == 20 and all(client.closes == 0 for client in replaced)
    await past_the_grace(clock)
    assert [client.closes for client in replaced] == [1] * 20
    assert current.closes == 0 and not router._retired and not router._retiring
    await router.aclose()
    assert [client.closes for client in built] == [1] * len(built)


async def test_a_replaced_client_in_the_middle_of_a_stream_is_closed_after_the_stream_ends(clock, built):
    router = Router(policy(), clock=clock)
    streaming = built[0]
    streaming.script("a", Step.reply("one two three"))
    stream = router.stream("chat", USER)
    assert await anext(stream) == "one"
    router.reload(policy(headers={"x-team": "search"}))
    await past_the_grace(clock)
    clock.advance(10)
    await settle()
    assert streaming.closes == 0  # the reader has not finished
    assert [item async for item in stream][:2] == [" two", " three"]
    clock.advance(1)
    await settle()
    assert streaming.closes == 1
    await router.aclose()
    assert streaming.closes == 1


async def test_shutdown_closes_the_replaced_clients_that_are_still_waiting(clock, built):
    router = Router(policy(), clock=clock)
    for n in range(3):
        router.reload(policy(headers={"x-reload": str(n)}))
    await settle()
    await router.aclose()
    assert [client.closes for client in built] == [1] * len(built)
    await past_the_grace(clock)
    assert [client.closes for client in built] == [1] * len(built)


def test_a_reload_from_synchronous_code_closes_the_replaced_client_on_the_router_loop(clock, built):
    router = Router(policy(), clock=clock)
    assert router.complete_sync("chat", USER).target == "a"
    router.reload(policy(headers={"x-team": "search"}))  # no loop runs in this thread
    router._run_sync(past_the_grace(clock))
    assert built[0].closes == 1
    router.close()
    assert [client.closes for client in built] == [1] * len(built)
