"""Health and the breaker together never wedge a target out (issue 9), in virtual time.

The outage doubles below answer the models listing and chat separately, because that is how
targets fail: a listing that answers 200 while every completion returns 503, or the reverse.
"""

from __future__ import annotations

from typing import Any

import pytest

from router import ErrorKind, ProviderError, Router
from router._selection import unavailable
from router.providers.base import Call, Reply
from router.resilience.runtime import Health
from router.state.memory import MemoryStore
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider

from ..engine.conftest import USER, build_policy
from .test_fleet_in_process import settle

INTERVAL = 10.0  # the default health interval


class Outage(ScriptedProvider):
    """A provider whose chat and whose models listing go down and heal independently."""

    def __init__(self, name: str, clock: FakeClock) -> None:
        super().__init__(name, clock=clock)
        self.chat_down = False
        self.listing_down = False

    async def complete(self, call: Call) -> Reply:
        if self.chat_down:
            self.calls.append(call)
            raise ProviderError(ErrorKind.SERVER_ERROR, "503", provider=self.name, status=503)
        return await super().complete(call)

    async def list_models(self) -> list[str]:
        if self.listing_down:
            self.listings += 1
            raise ProviderError(ErrorKind.CONNECTION, "listing down", provider=self.name)
        return await super().list_models()


class Worker:
    def __init__(self, name: str, clock: FakeClock, store: MemoryStore | None, **health: Any) -> None:
        self.p1 = Outage("p1", clock)
        policy = build_policy({"retry": {"attempts": 1}}, health={"enabled": True, **health})
        self.router = Router(
            policy,
            clock=clock,
            providers={"p1": self.p1, "p2": ScriptedProvider("p2", clock=clock)},
            seed=sum(map(ord, name)),
            store=store,
            worker=name,
        )

    async def ask(self) -> str:
        return (await self.router.complete("chat", USER)).target


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False)


async def traffic(clock: FakeClock, workers: list[Worker], seconds: int) -> list[tuple[float, str]]:
    """One request a second from every worker (no workers: time passes); who answered, when.

    Health runs in the background of each router, on the same clock.
    """
    answers = []
    for _ in range(seconds):
        for worker in workers:
            answers.append((clock.monotonic(), await worker.ask()))
        clock.advance(1.0)
        await settle()
    return answers


def back_at(answers: list[tuple[float, str]]) -> float:
    """When the primary answered first."""
    times = [when for when, target in answers if target == "a"]
    assert times, "the primary never got traffic back"
    return times[0]


def fleet(clock: FakeClock, size: int) -> list[Worker]:
    # One worker alone keeps its state in memory; several share a store (one probes for all).
    store = MemoryStore(clock) if size > 1 else None
    return [Worker(f"w{i}", clock, store) for i in range(size)]


@pytest.mark.parametrize("size", [1, 3])
async def test_a_target_whose_chat_heals_takes_traffic_back_within_one_interval(clock, size):
    workers = fleet(clock, size)
    for worker in workers:
        worker.p1.chat_down = True
    outage = await traffic(clock, workers, 125)  # long enough to go unhealthy and re-trip the breakers
    assert {target for _, target in outage[-10 * size :]} == {"b"}
    healed = clock.monotonic()
    for worker in workers:
        worker.p1.chat_down = False  # the models listing answered all along: it proved nothing
    after = await traffic(clock, workers, 40)
    back = back_at(after)
    assert back - healed <= INTERVAL
    # From then on every worker sends its traffic to the primary again.
    assert {target for when, target in after if when > back} == {"a"}


async def test_a_target_whose_listing_fails_but_chat_works_is_not_kept_out(clock):
    [worker] = fleet(clock, 1)
    worker.p1.listing_down = True
    runtime = worker.router._runtimes["a"]
    await worker.ask()
    for _ in range(5):  # no traffic: failed listings alone mark it unhealthy
        if runtime.health == Health.UNHEALTHY:
            break
        await traffic(clock, [], int(INTERVAL))
    assert runtime.health == Health.UNHEALTHY
    out = clock.monotonic()
    answers = await traffic(clock, [worker], 60)
    back = back_at(answers)
    assert back - out <= INTERVAL  # one completion probe that answers is proof enough
    assert {target for when, target in answers if when > back} == {"a"}


async def test_probe_kinds(clock):
    models = Worker("w", clock, None, probe="models")
    completion = Worker("w", clock, None, probe="completion")
    await models.router.check_health()
    await completion.router.check_health()
    assert models.p1.listings == 1 and models.p1.calls == []
    assert completion.p1.listings == 0
    [ping] = completion.p1.calls
    assert ping == Call("a", [{"role": "user", "content": "ping"}], 5.0, max_tokens=1, temperature=None)


async def test_auto_lists_models_while_all_is_well_and_pays_a_token_only_during_an_outage(clock):
    worker = Worker("w", clock, None)
    await worker.router.check_health()
    assert (worker.p1.listings, worker.p1.count()) == (1, 0)
    worker.p1.chat_down = True
    for _ in range(5):  # the default breaker opens after 5 failures in a row
        await worker.ask()
    breaker = worker.router._runtimes["a"].breaker
    assert breaker.state == "open"
    clock.advance(INTERVAL)
    await worker.router.check_health()
    assert (worker.p1.listings, worker.p1.count()) == (1, 6)  # a completion probe, not a listing
    worker.p1.chat_down = False
    clock.advance(INTERVAL)
    await worker.router.check_health()
    assert breaker.state == "closed"  # the probe that answered closed it
    assert await worker.ask() == "a"


def test_a_breaker_that_closed_after_the_unhealthy_verdict_overrules_it(clock):
    router = Router(
        build_policy(), clock=clock, providers={"p1": ScriptedProvider(), "p2": ScriptedProvider()}
    )
    route, a = router.plan.routes["chat"], router._runtimes["a"]
    a.health, a.health_since = Health.UNHEALTHY, 100.0
    assert unavailable(a, route, 200.0) == "unhealthy"
    a.recovered_at = 90.0  # a recovery older than the verdict: the verdict is the newer word
    assert unavailable(a, route, 200.0) == "unhealthy"
    a.recovered_at = 150.0
    assert unavailable(a, route, 200.0) is None
