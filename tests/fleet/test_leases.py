"""Quota leasing (`router._quota`): the fleet's buckets spent from memory, in virtual time.

Every worker here shares one `MemoryStore`; the store doubles below hang or fail on demand.
Requests never wait on the store: they debit a lease, and a keeper task refills it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router._quota import HEARTBEAT, LIVE_TTL, MAX_SHARE, Lease, Quotas
from router.state import Grant, MemoryStore, StoreUnavailable
from router.testing import FakeClock


async def background(turns: int = 30) -> None:
    """Let the keepers run (a store in memory answers within a few loop turns)."""
    for _ in range(turns):
        await asyncio.sleep(0)


class CountingStore(MemoryStore):
    """A MemoryStore that counts its lease calls and can hang them or fail them."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.leases = 0
        self.adjusts = 0
        self.hung = False
        self.down = False
        self._release = asyncio.Event()

    async def lease(self, *args: Any, **kwargs: Any) -> Grant:
        self.leases += 1
        if self.hung:
            await self._release.wait()  # an answer that never comes (until released)
        if self.down:
            raise StoreUnavailable("down")
        return await super().lease(*args, **kwargs)

    async def adjust(self, *args: Any, **kwargs: Any) -> None:
        self.adjusts += 1
        if self.down:
            raise StoreUnavailable("down")
        await super().adjust(*args, **kwargs)

    async def level(self, bucket: str, capacity: float, per_second: float) -> float:
        return (await MemoryStore.lease(self, bucket, 0, capacity, per_second, "")).level

    def release(self) -> None:
        self.hung = False
        self._release.set()
        self._release = asyncio.Event()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False)


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    return CountingStore(clock)


def worker(store: CountingStore, clock: FakeClock, name: str = "w1") -> Quotas:
    return Quotas(store, name, clock=clock, patience=0.25)


async def spend(lease: Lease, clock: FakeClock, amount: float, per_second: float, seconds: float) -> int:
    """Take `amount` at `per_second` calls a second for `seconds`, the keeper running between; calls taken."""
    taken = 0
    for _ in range(round(per_second * seconds)):
        taken += lease.take(amount)
        clock.advance(1 / per_second)
        await background(8)
    return taken


# -- the request path ---------------------------------------------------------------------------


async def test_calls_debit_memory_and_the_store_sees_only_refills(
    store: CountingStore, clock: FakeClock
) -> None:
    quotas = worker(store, clock)
    lease = quotas.lease("tpm:a", 600_000, 10_000, credit=True)  # 10 000 tokens a second
    assert await spend(lease, clock, 100, per_second=50, seconds=10) == 500
    # 500 calls; the lease holds ~2 s of use (10 000 tokens), refilled at half: a few dozen refills.
    print(f"\n{store.leases} lease calls for 500 requests")
    assert store.leases <= 40
    assert lease.size == pytest.approx(100 * 50 * quotas.horizon, rel=0.15)
    await quotas.aclose()


async def test_a_hung_store_costs_a_call_nothing_while_the_lease_lasts_then_the_share_serves(
    store: CountingStore, clock: FakeClock
) -> None:
    quotas = worker(store, clock)
    lease = quotas.lease("rpm:a", 6000, 100, credit=False)  # 100 a second for the fleet
    await spend(lease, clock, 1, per_second=20, seconds=6)
    store.hung = True
    # 6 s more at 20 a second: the lease runs low, its refill hangs, and after `patience` the
    # worker stops counting on the store: its share (100 a second: it is alone) serves.
    refused = 20 * 6 - await spend(lease, clock, 1, per_second=20, seconds=6)
    assert not quotas.reachable
    assert refused <= 1  # at most the first call after the cut, on an empty share
    store.release()
    await quotas.aclose()


async def test_a_call_waits_on_a_hung_refill_for_patience_at_most(
    store: CountingStore, clock: FakeClock
) -> None:
    quotas = worker(store, clock)
    lease = quotas.lease("rpm:a", 6000, 100, credit=False)
    store.hung = True
    started = clock.monotonic()
    waiter = asyncio.ensure_future(lease.acquire(1, max_wait=10.0))  # nothing held: it waits
    while not waiter.done():
        await background()
        clock.advance(0.001)
    assert waiter.result()
    assert clock.monotonic() - started <= quotas.patience + 0.02  # then 1/100 s for the share
    store.release()
    await quotas.aclose()


async def test_an_acquire_waits_for_the_refill_of_an_empty_lease_never_for_the_store(
    store: CountingStore, clock: FakeClock
) -> None:
    quotas = worker(store, clock)
    lease = quotas.lease("rpm:a", 60, 1, credit=False)
    waiter = asyncio.ensure_future(lease.acquire(1, max_wait=1.0))
    await background()
    assert waiter.done() and waiter.result()  # the keeper's first grant served it
    store.hung = True
    while lease.take(1):  # what the keeper fetched since
        pass
    waiter = asyncio.ensure_future(lease.acquire(1, max_wait=1.0))
    await background()
    assert not waiter.done()
    clock.advance(0.25)  # the refill is late: the worker stops counting on the store ...
    await background()
    # ... and the share, which starts empty, has 1 call in 4 s (60 a minute over 1 worker, 1/s):
    # too far for this waiter.
    assert waiter.done() and waiter.result() is False
    store.release()
    await quotas.aclose()


# -- sizes that follow the rate ---------------------------------------------------------------------


async def test_a_busy_worker_holds_more_an_idle_one_gives_it_back(
    store: CountingStore, clock: FakeClock
) -> None:
    busy, idle = worker(store, clock, "busy"), worker(store, clock, "idle")
    capacity, rate = 100_000.0, 1000.0
    a = busy.lease("tpm:a", capacity, rate, credit=True)
    b = idle.lease("tpm:a", capacity, rate, credit=True)
    await spend(a, clock, 50, per_second=40, seconds=5)
    b.take(50)
    await background()
    assert a.size > 10 * b.size
    assert a.size <= MAX_SHARE * capacity
    grant = await store.lease("tpm:a", 0, capacity, rate, "")
    # What they held at their last refills: what they hold now, and what they spent since.
    assert grant.workers == 2 and a.held + b.held <= grant.outstanding <= 1.5 * (a.size + b.size)
    # Both stop. The busy one's lease follows its rate down (the rest goes back at its
    # heartbeats); within a minute and a half both hold nothing, and the bucket has it all back.
    peak = a.size
    for _ in range(20):
        clock.advance(0.5)
        await background()
    assert a.held <= 0.4 * peak
    for _ in range(100):
        clock.advance(0.5)
        await background()
    assert a.held == b.held == 0
    assert await store.level("tpm:a", capacity, rate) == pytest.approx(capacity)


async def test_shutdown_gives_every_lease_back_and_leaves(store: CountingStore, clock: FakeClock) -> None:
    quotas = worker(store, clock)
    lease = quotas.lease("budget:daily", 10.0, 10.0 / 86400, credit=True)
    for _ in range(20):
        assert lease.take(0.01)
        await background()
    assert lease.held > 0
    await quotas.aclose()
    grant = await store.lease("budget:daily", 0, 10.0, 10.0 / 86400, "")
    assert (grant.workers, grant.outstanding) == (0, 0)
    assert grant.level == pytest.approx(10.0 - 20 * 0.01)


# -- the bound on overspending ------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 4])
async def test_a_fleet_overspends_a_budget_by_at_most_a_lease_and_a_call_per_worker(
    store: CountingStore, clock: FakeClock, workers: int
) -> None:
    capacity, call = 1.0, 0.004  # 250 calls' worth; refilled per day: nothing within the test
    fleet = [
        worker(store, clock, f"w{i}").lease("budget:b", capacity, capacity / 86400, credit=True)
        for i in range(workers)
    ]
    spent = 0.0
    for _ in range(2 * round(capacity / call)):
        for lease in fleet:
            for _ in range(3):  # three calls at once on each worker
                if lease.take(call):
                    spent += call
        clock.advance(0.01)
        await background(8)
    bound = sum(max(MAX_SHARE * capacity, call) + call for _ in fleet)
    print(f"\n{workers} workers spent {spent / capacity:.3f}x the budget (bound {1 + bound / capacity:.2f}x)")
    assert capacity - call <= spent <= capacity + bound
    assert spent <= capacity * 1.05  # what it is in practice: far inside the bound


async def test_requests_never_run_ahead_so_a_fleet_spends_no_more_than_the_bucket(
    store: CountingStore, clock: FakeClock
) -> None:
    fleet = [worker(store, clock, f"w{i}").lease("rpm:a", 60, 1, credit=False) for i in range(4)]
    served = 0
    for _ in range(300):  # 3 s
        for lease in fleet:
            served += lease.take(1)
        clock.advance(0.01)
        await background(8)
    assert served <= 60 + 3


# -- the store goes away ---------------------------------------------------------------------------------


async def test_cut_off_a_worker_spends_its_lease_then_its_share_which_starts_empty(
    store: CountingStore, clock: FakeClock
) -> None:
    one, other = worker(store, clock, "w1"), worker(store, clock, "w2")
    capacity, rate = 6000.0, 100.0  # per second: the share of one of two workers is 50
    lease = one.lease("tpm:a", capacity, rate, credit=True)
    other_lease = other.lease("tpm:a", capacity, rate, credit=True)
    other_lease.take(10)
    await background()
    await spend(lease, clock, 10, per_second=10, seconds=3)
    assert lease.workers == 2
    store.down = True
    clock.advance(0.01)
    # Take until refused: what the lease held, nothing more (the share is empty).
    held, taken = lease.held, 0
    while lease.take(10):
        taken += 10
        await background()
    assert not one.reachable
    assert held - 10 < taken <= max(held, 0) + 10
    # Then 50 a second, no burst: 10 s give 500 (in calls of 10).
    taken = 0
    for _ in range(100):
        clock.advance(0.1)
        await background(4)
        while lease.take(10):
            taken += 10
    assert 480 <= taken <= 510
    # Back: what the share paid is debited from the fleet's bucket.
    level = await store.level("tpm:a", capacity, rate)
    store.down = False
    clock.advance(RETRY_WAIT)
    await background(60)
    assert one.reachable
    assert store.adjusts == 1
    assert await store.level("tpm:a", capacity, rate) < level - 400
    await one.aclose()
    await other.aclose()


RETRY_WAIT = 5.0


async def test_a_store_that_never_answered_leaves_each_worker_the_whole_rate(
    store: CountingStore, clock: FakeClock
) -> None:
    """With no word from the store yet, a worker cannot know the fleet's size: it counts itself alone."""
    store.down = True
    quotas = worker(store, clock)
    lease = quotas.lease("rpm:a", 60, 1, credit=False)
    assert not lease.take(1)  # nothing held; the store is not known to be away yet
    await background()
    assert not quotas.reachable
    clock.advance(2.0)
    assert lease.take(1) and lease.take(1) and not lease.take(1)
    await quotas.aclose()


def test_the_constants_agree() -> None:
    assert HEARTBEAT < LIVE_TTL  # a worker with a lease is never counted out between its heartbeats


# -- a router's leases -----------------------------------------------------------------------------------


async def test_status_shows_what_the_fleet_holds_of_each_bucket_and_shutdown_gives_it_back(
    store: CountingStore, clock: FakeClock
) -> None:
    from router import Policy, Router
    from router.testing.scripted import ScriptedProvider

    provider = {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": "unused"}
    policy = Policy.model_validate(
        {
            "providers": {"p": {**provider, "limits": {"rpm": 6000, "tpm": 600_000}}},
            "targets": {
                "a": {
                    "provider": "p",
                    "model": "a",
                    "price": {"input": 1.0, "output": 2.0},
                    "tier": "premium",
                }
            },
            "routes": {"chat": {"targets": ["a"]}},
            "budgets": {"premium-daily": {"tier": "premium", "usd": 100, "per": "day"}},
        }
    )
    routers = [
        Router(
            policy, clock=clock, providers={"p": ScriptedProvider("p", clock=clock)}, store=store, worker=w
        )
        for w in ("w1", "w2")
    ]
    for _ in range(20):
        for router in routers:
            await router.complete("chat", [{"role": "user", "content": "hi"}], max_tokens=50)
            await background()
    (row,) = await routers[0].status()
    assert row.leases.keys() == {"rpm", "tpm", "budget:premium-daily"}
    held = {
        name: sum(
            lease.held for r in routers for lease in r._quotas.leases().values() if lease.bucket == bucket
        )
        for name, bucket in (
            ("rpm", "rpm:a"),
            ("tpm", "tpm:a"),
            ("budget:premium-daily", "budget:premium-daily"),
        )
    }
    for name, outstanding in row.leases.items():
        assert 0 < held[name] <= outstanding, name
    for router in routers:
        await router.aclose()
    assert (await store.lease("tpm:a", 0, 600_000, 10_000, "")).workers == 0
    assert (await store.lease("budget:premium-daily", 0, 100, 100 / 86400, "")).outstanding == 0
