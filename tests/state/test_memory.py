"""What only `MemoryStore` promises: synchronous echoes, exact virtual-time arithmetic."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from router.resilience.window import TripRule, open_time
from router.state import BreakerRecord, MemoryStore
from router.testing import FakeClock

ONE = TripRule(
    consecutive=1,
    failure_rate=1.0,
    min_calls=1000,
    window=1.0,
    min_workers=1,
    reset_timeout=1.0,
    max_reset_timeout=1.0,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False)


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock)


async def test_callbacks_hear_a_transition_before_it_returns(store: MemoryStore) -> None:
    heard: list[BreakerRecord] = []
    await store.start(heard.append)
    tripped = await store.report("t", "w1", successes=0, failures=1, rule=ONE)
    assert heard == [tripped]
    record = await store.transition("t", expect_generation=1, state="half-open", holder="w1")
    assert heard[-1] == record
    assert await store.transition("t", expect_generation=1, state="closed") is None
    assert len(heard) == 2  # a lost compare-and-set announces nothing


async def test_a_failing_callback_is_logged_and_the_others_still_hear(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[BreakerRecord] = []

    def broken(record: BreakerRecord) -> None:
        raise RuntimeError("callback bug")

    await store.start(broken)
    await store.start(heard.append)
    record = await store.transition("t", expect_generation=0, state="open", reset_timeout=1)
    assert heard == [record]
    assert "state callback failed" in caplog.text


async def test_aclose_forgets_the_callbacks(store: MemoryStore) -> None:
    heard: list[BreakerRecord] = []
    await store.start(heard.append)
    await store.aclose()
    await store.transition("t", expect_generation=0, state="open", reset_timeout=1)
    assert heard == []


async def test_a_failure_exactly_one_window_old_has_left_it(store: MemoryStore, clock: FakeClock) -> None:
    params: dict[str, Any] = {"successes": 0, "failures": 1, "rule": dataclasses.replace(ONE, consecutive=2)}
    clock.advance(0.5)  # 1000.5: exact in binary, like the subtraction below
    await store.report("t", "w1", **params)
    clock.advance(1.0)
    assert await store.report("t", "w1", **params) is None
    assert await store.report("t", "w1", **params) is not None


async def test_leases_and_health_end_exactly_at_their_ttl(store: MemoryStore, clock: FakeClock) -> None:
    assert await store.take_lease("l", "w1", 2.0)
    await store.record_probe("t", True, "", ttl=2.0)
    clock.advance(1.5)
    assert not await store.take_lease("l", "w2", 2.0)
    assert (await store.health())["t"].checked_ago == 1.5
    clock.advance(0.5)
    assert await store.health() == {}
    assert await store.take_lease("l", "w2", 2.0)


async def test_bucket_arithmetic_is_exact_in_virtual_time(store: MemoryStore, clock: FakeClock) -> None:
    assert (await store.lease("b", 100, 100, 10, "w")).level == 0.0
    await store.adjust("b", 25, 100, 10)  # -25
    clock.advance(2.0)  # 20 back: -5
    assert (await store.lease("b", 0, 100, 10, "")).level == -5.0
    await store.adjust("b", -15, 100, 10)
    assert (await store.lease("b", 10, 100, 10, "w", holding=100)).granted == 10.0


def test_the_open_time_doubles_per_trip_and_never_overflows() -> None:
    assert [open_time(trips, 1.0, 10.0) for trips in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert open_time(5_000, 1.0, 10.0) == 10.0
    assert open_time(5_000, 1.0, 1e300) == 2.0**30  # the exponent is capped: never inf, never an error
    assert open_time(3, 5.0, 0.0) == 5.0  # no max given: the reset timeout is the cap


async def test_the_default_clock_is_the_system_clock() -> None:
    store = MemoryStore()
    assert await store.take_lease("l", "w1", 60)
    assert not await store.take_lease("l", "w2", 60)
