"""Several workers (routers) sharing one MemoryStore, in virtual time: the fleet's rules."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest

from router import ErrorKind, Router
from router.state.base import StoreUnavailable
from router.state.memory import MemoryStore
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

from ..engine.conftest import USER, build_policy, transitions_into


class Worker:
    def __init__(self, name: str, store: Any, clock: FakeClock, **policy: Any) -> None:
        self.p1 = ScriptedProvider("p1", clock=clock)
        self.p2 = ScriptedProvider("p2", clock=clock)
        self.transitions: list[Any] = []
        route = policy.pop("route", None) or {"retry": {"attempts": 1}}
        self.router = Router(
            build_policy(route, **policy),
            clock=clock,
            providers={"p1": self.p1, "p2": self.p2},
            seed=sum(map(ord, name)),
            store=store,
            worker=name,
            on_event=transitions_into(self.transitions),
        )

    async def ask(self) -> Any:
        return await self.router.complete("chat", USER)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False)  # time moves only when a test says so


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


BREAKER = {"fail_max": 2, "reset_timeout": "10s", "window": "60s"}


async def test_a_trip_in_one_worker_is_skipped_by_every_worker(clock):
    store = MemoryStore(clock)
    a, b = Worker("a", store, clock, breaker=BREAKER), Worker("b", store, clock, breaker=BREAKER)
    a.p1.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 2)
    await a.ask()
    await a.ask()
    await settle()
    result = await b.ask()
    assert [(x.target, x.outcome) for x in result.attempts] == [("a", "breaker_open"), ("b", "ok")]
    assert b.p1.count() == 0
    assert [(t.new, t.remote) for t in b.transitions] == [("open", True)]


async def test_failures_count_across_workers_within_the_window(clock):
    store = MemoryStore(clock)
    a, b = Worker("a", store, clock, breaker=BREAKER), Worker("b", store, clock, breaker=BREAKER)
    a.p1.script("a", Step.fail(ErrorKind.SERVER_ERROR))
    b.p1.script("a", Step.fail(ErrorKind.SERVER_ERROR))
    await a.ask()
    await b.ask()
    await settle()
    assert (await a.ask()).attempts[0].outcome == "breaker_open"


async def test_min_workers_keeps_one_bad_worker_from_opening_everyones_breaker(clock):
    store = MemoryStore(clock)
    breaker = {**BREAKER, "min_workers": 2}
    a, b = Worker("a", store, clock, breaker=breaker), Worker("b", store, clock, breaker=breaker)
    a.p1.script("a", *[Step.fail(ErrorKind.AUTH, status=401)] * 5)
    for _ in range(5):
        await a.ask()
    await settle()
    assert b.router._runtimes["a"].breaker.state == "closed"  # still closed for everyone
    b.p1.script("a", Step.fail(ErrorKind.SERVER_ERROR))
    await b.ask()
    await settle()
    assert (await b.ask()).attempts[0].outcome == "breaker_open"


async def test_one_worker_probes_and_its_verdict_closes_the_breaker_for_all(clock):
    store = MemoryStore(clock)
    workers = [Worker(name, store, clock, breaker=BREAKER) for name in ("a", "b", "c")]
    workers[0].p1.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 2)
    await workers[0].ask()
    await workers[0].ask()
    await settle()
    clock.advance(10.5)  # past the reset timeout: the workers with a request race for the lease
    for worker in workers:
        await worker.ask()
    await settle()
    holders = {w.router.worker for w in workers if w.router._runtimes["a"].breaker.holder == w.router.worker}
    assert len(holders) == 1
    for worker in workers:
        await worker.ask()
    await settle()
    assert sum(w.p1.count("a") for w in workers) == 2 + 1  # two failures, then exactly one probe
    assert all(w.router._runtimes["a"].breaker.state == "closed" for w in workers)
    assert [(await w.ask()).target for w in workers] == ["a", "a", "a"]


async def test_a_failed_probe_reopens_for_everyone_with_a_longer_wait(clock):
    store = MemoryStore(clock)
    a, b = Worker("a", store, clock, breaker=BREAKER), Worker("b", store, clock, breaker=BREAKER)
    a.p1.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 3)
    b.p1.script("a", Step.fail(ErrorKind.SERVER_ERROR))
    await a.ask()
    await a.ask()
    await settle()
    clock.advance(10.5)
    await a.ask()  # a request past the wait takes the probe lease...
    await settle()
    for worker in (a, b):
        await worker.ask()  # ...and the holder's next one probes, and fails
    await settle()
    records = (await store.snapshot()).breakers
    assert records["a"].state == "open" and records["a"].trips == 2
    assert 19.0 < records["a"].retry_in <= 20.0
    assert all(w.router._runtimes["a"].breaker.state == "open" for w in (a, b))


class Unreachable(MemoryStore):
    async def report(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("down")


async def test_when_the_store_is_down_each_worker_falls_back_to_its_own_breaker(clock, caplog):
    caplog.set_level(logging.WARNING, "router")
    a = Worker("a", Unreachable(clock), clock, breaker=BREAKER)
    a.p1.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 5)
    for _ in range(3):
        await a.ask()
        await settle()
    assert a.router._runtimes["a"].breaker.state == "open"
    assert caplog.text.count("shared state unreachable") == 1


class Counting(MemoryStore):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls = Counter[str]()

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if not name.startswith("_") and name not in ("calls", "start", "aclose") and callable(attribute):
            self.calls[name] += 1
        return attribute


async def test_a_successful_call_never_touches_the_store(clock):
    store = Counting(clock)
    a = Worker("a", store, clock, breaker=BREAKER)
    await a.ask()  # joining the fleet reads its state once
    assert store.calls == {"snapshot": 1}
    store.calls.clear()
    for _ in range(100):
        await a.ask()
    await settle()
    assert sum(store.calls.values()) == 0


async def test_drain_and_restore_reach_every_worker(clock):
    store = MemoryStore(clock)
    a, b = Worker("a", store, clock), Worker("b", store, clock, health={"enabled": True, "interval": "5s"})
    await a.router.drain("a")
    await b.router.check_health()  # the refresh a health round does
    result = await b.ask()
    assert [(x.target, x.outcome) for x in result.attempts] == [("a", "drained"), ("b", "ok")]
    await a.router.restore("a")
    await b.router.check_health()
    assert (await b.ask()).target == "a"


async def test_a_drain_reaches_every_worker_at_once_with_health_off(clock):
    store = MemoryStore(clock)
    a, b = Worker("a", store, clock), Worker("b", store, clock)
    await b.ask()  # b has joined the fleet
    await a.router.drain("a")
    result = await b.ask()  # no health round, no reconcile: the announcement alone
    assert [(x.target, x.outcome) for x in result.attempts] == [("a", "drained"), ("b", "ok")]
    await a.router.restore("a")
    assert (await b.ask()).target == "a"


async def test_a_fresh_workers_first_request_honours_a_drain(clock):
    store = MemoryStore(clock)
    a = Worker("a", store, clock)
    await a.router.drain("a")
    fresh = Worker("fresh", store, clock)
    result = await fresh.ask()
    assert [(x.target, x.outcome) for x in result.attempts] == [("a", "drained"), ("b", "ok")]
    assert fresh.p1.count("a") == 0


async def test_a_store_restarted_empty_keeps_an_open_breaker_open_and_follows_its_new_records(clock):
    old = MemoryStore(clock)
    a = Worker("a", old, clock, breaker=BREAKER)
    a.p1.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 2)
    await a.ask()
    await a.ask()
    await settle()
    breaker = a.router._runtimes["a"].breaker
    assert breaker.state == "open" and breaker.generation == 1
    fleet = a.router._fleet
    assert fleet is not None
    fleet.store = new = MemoryStore(clock)  # the same address, an empty store: a new epoch
    await fleet._reconcile()
    await settle()  # written back to the new store: the next reconcile finds it open too
    assert breaker.state == "open" and (breaker.epoch, breaker.generation) == (new.epoch, 1)
    await fleet._reconcile()
    assert (await a.ask()).attempts[0].outcome == "breaker_open"
    clock.advance(10.5)
    await a.ask()  # past the wait: the probe lease is taken in the new epoch
    await settle()
    a.p1.script("a", Step.fail(ErrorKind.SERVER_ERROR))
    await a.ask()  # the probe fails: reopened in the new epoch
    await settle()
    record = (await new.snapshot()).breakers["a"]
    assert (record.state, record.epoch) == ("open", new.epoch)
    assert (breaker.state, breaker.generation) == ("open", record.generation)
