"""One contract for every `StateStore`: run over `MemoryStore` (virtual time) and `RedisStore`."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from router.resilience.window import TripRule
from router.state import BreakerRecord, DrainRecord, Snapshot, StateStore

from .conftest import Harness

# Three failures in a row trip; the rate alone never does (min_calls out of reach).
TRIP = TripRule(
    consecutive=3,
    failure_rate=1.0,
    min_calls=1_000_000,
    window=0.2,
    min_workers=1,
    reset_timeout=0.1,
    max_reset_timeout=1.0,
)


async def fail(
    store: StateStore, target: str = "t", worker: str = "w1", rule: TripRule = TRIP, successes: int = 0
) -> BreakerRecord | None:
    return await store.report(target, worker, successes=successes, failures=1, rule=rule)


def without_epoch(record: BreakerRecord | None) -> BreakerRecord | None:
    return None if record is None else dataclasses.replace(record, epoch="")


def approx(value: float, harness: Harness) -> Any:
    return pytest.approx(value, abs=harness.tolerance)


def approx_level(value: float, harness: Harness, per_second: float = 10) -> Any:
    """A bucket's level, known to what it refills in the harness's time tolerance."""
    return pytest.approx(value, abs=per_second * harness.tolerance)


# -- breakers: the failure window -----------------------------------------------------------


async def test_the_threshold_th_failure_in_the_window_trips(harness: Harness) -> None:
    store = await harness.store()
    assert await fail(store) is None
    assert await fail(store) is None
    record = await fail(store)
    assert without_epoch(record) == BreakerRecord("t", "open", generation=1, retry_in=0.1, trips=1, holder="")


async def test_failures_older_than_the_window_do_not_count(harness: Harness) -> None:
    store = await harness.store()
    for _ in range(2):
        assert await fail(store) is None
    await harness.elapse(0.25)
    assert await fail(store) is None
    assert await fail(store) is None
    record = await fail(store)
    assert record is not None and record.state == "open"


async def test_targets_count_apart(harness: Harness) -> None:
    store = await harness.store()
    for target in ("a", "b", "a", "b"):
        assert await fail(store, target) is None
    assert await fail(store, "a") is not None
    assert (await store.snapshot()).breakers.keys() == {"a"}


async def test_one_worker_cannot_trip_alone_when_min_workers_is_two(harness: Harness) -> None:
    w1, w2 = await harness.store("w1"), await harness.store("w2")
    rule = dataclasses.replace(TRIP, min_workers=2)
    for _ in range(3):
        assert await fail(w1, rule=rule) is None
    record = await fail(w2, worker="w2", rule=rule)
    assert record is not None and (record.state, record.generation) == ("open", 1)


async def test_only_workers_with_failures_in_the_window_count_towards_min_workers(harness: Harness) -> None:
    store = await harness.store()
    rule = dataclasses.replace(TRIP, consecutive=2, min_workers=2)
    assert await fail(store, worker="host:1", rule=rule) is None
    await harness.elapse(0.25)
    assert await fail(store, worker="host:2", rule=rule) is None
    assert await fail(store, worker="host:2", rule=rule) is None
    record = await fail(store, worker="host:1", rule=rule)
    assert record is not None and record.state == "open"


async def test_failures_while_open_are_ignored_and_close_clears_the_window(harness: Harness) -> None:
    store = await harness.store()
    for _ in range(3):
        await fail(store)
    assert await fail(store) is None
    closed = await store.transition("t", expect_generation=1, state="closed")
    assert closed is not None and (closed.state, closed.generation, closed.trips) == ("closed", 2, 0)
    assert await fail(store) is None
    assert await fail(store) is None
    record = await fail(store)
    assert record is not None and (record.generation, record.trips, record.retry_in) == (3, 1, 0.1)


async def test_the_failure_rate_trips_once_the_window_holds_min_calls(harness: Harness) -> None:
    store = await harness.store()
    rule = dataclasses.replace(TRIP, consecutive=100, failure_rate=0.5, min_calls=10)
    assert await fail(store, rule=rule, successes=5) is None  # 6 calls, 1 failed
    for _ in range(3):
        assert await fail(store, rule=rule) is None  # up to 9 calls, 4 failed: too few calls
    record = await fail(store, rule=rule)  # 10 calls, 5 failed: 50 %
    assert record is not None and record.state == "open"


async def test_a_low_failure_rate_never_trips(harness: Harness) -> None:
    store = await harness.store()
    rule = dataclasses.replace(TRIP, consecutive=5, failure_rate=0.5, min_calls=10, window=5.0)
    for _ in range(30):
        assert await fail(store, rule=rule, successes=49) is None  # 2 % failing


async def test_a_success_between_failures_breaks_the_streak(harness: Harness) -> None:
    store = await harness.store()
    assert await fail(store) is None
    assert await fail(store) is None
    assert await fail(store, successes=1) is None  # a success came before this failure: 1 in a row
    assert await fail(store) is None
    record = await fail(store)
    assert record is not None and record.state == "open"


async def test_open_time_is_capped_and_never_overflows(harness: Harness) -> None:
    store = await harness.store()
    record = await store.transition("t", expect_generation=0, state="open", reset_timeout=0.1)
    assert record is not None
    for _ in range(1100):  # past 2 ** 1024
        half = await store.transition("t", expect_generation=record.generation, state="half-open", holder="w")
        assert half is not None
        record = await store.transition(
            "t", expect_generation=half.generation, state="open", reset_timeout=0.1, max_reset_timeout=0.5
        )
        assert record is not None
    assert (record.trips, record.retry_in) == (1101, 0.5)


async def test_every_record_and_snapshot_names_the_same_epoch(harness: Harness) -> None:
    store = await harness.store()
    first = await store.snapshot()
    record = await store.transition("t", expect_generation=0, state="open", reset_timeout=0.1)
    assert record is not None and first.epoch and record.epoch == first.epoch
    assert (await store.snapshot()).epoch == first.epoch


# -- breakers: transitions ----------------------------------------------------------------


async def test_transition_is_a_compare_and_set_on_the_generation(harness: Harness) -> None:
    store = await harness.store()
    for _ in range(3):
        await fail(store)
    assert await store.transition("t", expect_generation=0, state="half-open", holder="w2") is None
    half = await store.transition("t", expect_generation=1, state="half-open", holder="w2")
    assert without_epoch(half) == BreakerRecord(
        "t", "half-open", generation=2, retry_in=0.0, trips=1, holder="w2"
    )
    assert await store.transition("t", expect_generation=1, state="closed") is None
    closed = await store.transition("t", expect_generation=2, state="closed")
    assert without_epoch(closed) == BreakerRecord(
        "t", "closed", generation=3, retry_in=0.0, trips=0, holder=""
    )


async def test_a_breaker_nobody_touched_is_at_generation_zero(harness: Harness) -> None:
    store = await harness.store()
    assert await store.transition("t", expect_generation=1, state="open", reset_timeout=0.1) is None
    record = await store.transition("t", expect_generation=0, state="open", reset_timeout=0.1)
    assert without_epoch(record) == BreakerRecord("t", "open", generation=1, retry_in=0.1, trips=1)


async def test_reopening_doubles_the_reset_timeout_up_to_the_cap(harness: Harness) -> None:
    store = await harness.store()
    timeouts: dict[str, Any] = {"reset_timeout": 0.1, "max_reset_timeout": 0.35}
    rule = dataclasses.replace(TRIP, **timeouts)
    record = None
    for _ in range(3):
        record = await fail(store, rule=rule)
    assert record is not None
    seen = [(record.trips, record.retry_in)]
    for _ in range(3):
        half = await store.transition(
            "t", expect_generation=record.generation, state="half-open", holder="w1"
        )
        assert half is not None
        record = await store.transition("t", expect_generation=half.generation, state="open", **timeouts)
        assert record is not None
        seen.append((record.trips, record.retry_in))
    assert seen == [(1, 0.1), (2, 0.2), (3, 0.35), (4, 0.35)]

    closed = await store.transition("t", expect_generation=record.generation, state="closed")
    assert closed is not None and closed.trips == 0
    for _ in range(3):
        record = await fail(store, rule=rule)
    assert record is not None and (record.trips, record.retry_in) == (1, 0.1)


async def test_an_unknown_state_is_refused(harness: Harness) -> None:
    store = await harness.store()
    with pytest.raises(ValueError, match="unknown breaker state"):
        await store.transition("t", expect_generation=0, state="ajar")


async def test_breakers_lists_every_moved_breaker_with_the_time_left(harness: Harness) -> None:
    store = await harness.store()
    assert (await store.snapshot()).breakers == {}
    await store.transition("open", expect_generation=0, state="open", reset_timeout=0.3, max_reset_timeout=1)
    await store.transition("closed", expect_generation=0, state="open", reset_timeout=0.3)
    await store.transition("closed", expect_generation=1, state="closed")

    records = (await store.snapshot()).breakers
    assert records.keys() == {"open", "closed"}
    assert records["open"].retry_in == approx(0.3, harness)
    assert without_epoch(records["closed"]) == BreakerRecord("closed", "closed", generation=2)

    await harness.elapse(0.1)
    assert (await store.snapshot()).breakers["open"].retry_in == approx(0.2, harness)
    await harness.elapse(0.25)
    assert without_epoch((await store.snapshot()).breakers["open"]) == BreakerRecord(
        "open", "open", generation=1, trips=1
    )


async def test_every_started_store_hears_every_transition(harness: Harness) -> None:
    w1, w2 = await harness.store("w1"), await harness.store("w2")
    heard_1: list[BreakerRecord] = []
    heard_2: list[BreakerRecord] = []
    await w1.start(heard_1.append)
    await w2.start(heard_2.append)

    tripped = await w2.transition("t", expect_generation=0, state="open", reset_timeout=0.5)
    await harness.settle(lambda: tripped in heard_1 and tripped in heard_2)
    half = await w1.transition("t", expect_generation=1, state="half-open", holder="w1")
    await harness.settle(lambda: half in heard_1 and half in heard_2)
    assert half is not None and half.holder == "w1"


# -- leases ---------------------------------------------------------------------------------


async def test_a_lease_is_exclusive_until_it_expires(harness: Harness) -> None:
    store = await harness.store()
    assert await store.take_lease("probe:t", "w1", 0.15)
    assert not await store.take_lease("probe:t", "w2", 0.15)
    assert await store.take_lease("probe:u", "w2", 0.15)
    await harness.elapse(0.2)
    assert await store.take_lease("probe:t", "w2", 0.15)
    assert not await store.take_lease("probe:t", "w1", 0.15)


async def test_the_owner_renews_its_lease(harness: Harness) -> None:
    store = await harness.store()
    assert await store.take_lease("probe:t", "w1", 0.2)
    await harness.elapse(0.1)
    assert await store.take_lease("probe:t", "w1", 0.2)  # now held until 0.3
    await harness.elapse(0.15)
    assert not await store.take_lease("probe:t", "w2", 0.2)
    await harness.elapse(0.2)
    assert await store.take_lease("probe:t", "w2", 0.2)


# -- health and drains ----------------------------------------------------------------------


async def test_probe_verdicts_count_streaks(harness: Harness) -> None:
    store = await harness.store()
    first = await store.record_probe("t", True, "200 in 40ms", ttl=5)
    assert (first.healthy, first.streak, first.since, first.checked_ago) == (True, 1, 0.0, 0.0)
    assert first.detail == "200 in 40ms"
    await harness.elapse(0.1)
    second = await store.record_probe("t", True, "200 in 41ms", ttl=5)
    assert second.streak == 2
    assert second.since == approx(0.1, harness)
    await harness.elapse(0.05)
    changed = await store.record_probe("t", False, "503", ttl=5)
    assert (changed.healthy, changed.streak, changed.since) == (False, 1, 0.0)


async def test_health_reports_ages_and_forgets_records_past_their_ttl(harness: Harness) -> None:
    store = await harness.store()
    await store.record_probe("short", True, "", ttl=0.15)
    await store.record_probe("long", False, "timeout", ttl=5)
    await harness.elapse(0.1)
    records = await store.health()
    assert records.keys() == {"short", "long"}
    assert records["long"].checked_ago == approx(0.1, harness)
    assert records["long"].since == approx(0.1, harness)
    assert (records["long"].healthy, records["long"].streak, records["long"].detail) == (False, 1, "timeout")

    await harness.elapse(0.1)
    assert (await store.health()).keys() == {"long"}
    again = await store.record_probe("short", True, "", ttl=0.15)
    assert again.streak == 1  # the expired streak is not resumed


async def test_drains_are_announced_and_in_the_snapshot(harness: Harness) -> None:
    w1, w2 = await harness.store("w1"), await harness.store("w2")
    heard: list[Any] = []
    await w2.start(heard.append)
    await w1.set_drained("a", True)
    await harness.settle(lambda: DrainRecord("a", True) in heard)
    snapshot = await w2.snapshot()
    assert isinstance(snapshot, Snapshot) and snapshot.drained == {"a"}
    await w1.set_drained("a", False)
    await harness.settle(lambda: DrainRecord("a", False) in heard)


async def test_drained_is_a_set(harness: Harness) -> None:
    w1, w2 = await harness.store("w1"), await harness.store("w2")
    assert await w1.drained() == set()
    await w1.set_drained("a", True)
    await w1.set_drained("b", True)
    await w1.set_drained("b", True)
    await w2.set_drained("c", False)
    assert await w2.drained() == {"a", "b"}
    await w2.set_drained("a", False)
    assert await w1.drained() == {"b"}


# -- token buckets --------------------------------------------------------------------------


async def test_the_bucket_refills_over_time_up_to_capacity(harness: Harness) -> None:
    store = await harness.store()
    # capacity 10, 10 per second; worker "" only reads the level (known to the harness's time tolerance)
    assert (await store.lease("tpm", 8, 10, 10, "w1")).level == approx(2, harness)
    await harness.elapse(0.2)  # +2
    assert (await store.lease("tpm", 0, 10, 10, "")).level == approx_level(4, harness)
    await harness.elapse(0.8)  # +8, but full at 10
    assert (await store.lease("tpm", 0, 10, 10, "")).level == 10


async def test_a_bucket_that_never_refills_refuses_any_debt(harness: Harness) -> None:
    store = await harness.store()
    assert (await store.lease("budget", 5, 5, 0, "w1")).granted == 5
    assert (await store.lease("budget", 1, 5, 0, "w1", holding=5)).granted == 0
    await store.adjust("budget", -2, 5, 0)
    assert (await store.lease("budget", 2, 5, 0, "w1", holding=5)).granted == 2


async def test_adjust_corrects_a_spend(harness: Harness) -> None:
    store = await harness.store()
    assert (await store.lease("tpm", 10, 10, 10, "w1")).level == approx_level(0, harness)  # took all 10
    await store.adjust("tpm", -4, 10, 10)  # the call used 6: give 4 back
    assert (await store.lease("tpm", 0, 10, 10, "")).level == approx_level(4, harness)
    await store.adjust("tpm", 7, 10, 10)  # another used 7 more than estimated: into debt
    assert (await store.lease("tpm", 0, 10, 10, "")).level == approx_level(-3, harness)
    assert (await store.lease("tpm", 1, 10, 10, "w1")).granted == approx(0, harness)  # no lease from debt
    await store.adjust("tpm", -100, 10, 10)  # giving back never overfills
    assert (await store.lease("tpm", 0, 10, 10, "")).level == approx_level(10, harness)


# -- leases of a bucket ---------------------------------------------------------------------


async def test_a_lease_grants_what_the_bucket_holds_and_never_takes_it_below_zero(harness: Harness) -> None:
    store = await harness.store()
    # capacity 10, 10 per second
    first = await store.lease("tpm", 6, 10, 10, "w1")
    assert (first.granted, first.workers, first.outstanding) == (6, 1, 6)
    assert first.level == approx(4, harness)
    second = await store.lease("tpm", 6, 10, 10, "w1", holding=6)
    assert second.granted == approx(4, harness)  # all there was
    assert (second.workers, second.outstanding, second.level) == (1, approx(10, harness), approx(0, harness))
    assert (await store.lease("tpm", 6, 10, 10, "w1", holding=10)).granted == approx(0, harness)
    assert (await store.lease("tpm", 0, 10, 10, "")).level == approx_level(0, harness)  # empty, not in debt
    await harness.elapse(0.2)  # +2
    assert (await store.lease("tpm", 6, 10, 10, "w1")).granted == approx(2, harness)


async def test_a_lease_given_back_fills_the_bucket_up_to_capacity(harness: Harness) -> None:
    store = await harness.store()
    assert (await store.lease("budget", 5, 10, 0, "w1")).granted == 5
    back = await store.lease("budget", -3, 10, 0, "w1", holding=5)
    assert (back.granted, back.outstanding, back.level) == (-3, 2, 8)
    assert (await store.lease("budget", -7, 10, 0, "w1", holding=2)).granted == -2  # only 2 were missing
    assert (await store.lease("budget", 10, 10, 0, "w2")).granted == 10


async def test_leases_count_the_live_workers_and_what_they_hold(harness: Harness) -> None:
    w1, w2 = await harness.store("w1"), await harness.store("w2")
    assert (await w1.lease("rpm", 2, 100, 0, "w1", ttl=0.15)).workers == 1
    grant = await w2.lease("rpm", 3, 100, 0, "w2", ttl=5)
    assert (grant.workers, grant.outstanding) == (2, 5)
    read = await w2.lease("rpm", 0, 100, 0, "")  # a reader is no worker
    assert (read.granted, read.workers, read.outstanding) == (0, 2, 5)
    await harness.elapse(0.2)  # w1's time is up: it counts no more, nor does what it held
    assert (await w2.lease("rpm", 0, 100, 0, "w2", holding=3, ttl=5)).workers == 1
    left = await w2.lease("rpm", -3, 100, 0, "w2", holding=3, ttl=0)  # w2 leaves, giving back
    assert (left.granted, left.workers, left.outstanding) == (-3, 0, 0)
    assert (await w1.lease("rpm", 100, 100, 0, "w1")).granted == 98  # w1's 2 were spent, not lost
