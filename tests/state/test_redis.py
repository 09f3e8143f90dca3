"""What only `RedisStore` has to get right: pub/sub and reconcile between stores, failing fast
and quietly when Redis is away, and a listener that outlives a Redis restart."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import redis.asyncio

from router.clock import SystemClock
from router.resilience.window import TripRule
from router.state import BreakerRecord, Change, DrainRecord, RedisStore, Snapshot, StoreUnavailable
from router.testing import FakeClock

from ..redis_support import DedicatedRedis, free_port
from .conftest import FreezingProxy, eventually, write_unannounced_breaker

MakeStore = Callable[..., RedisStore]
TRIP_NOW: dict[str, Any] = {
    "successes": 0,
    "failures": 1,
    "rule": TripRule(
        consecutive=1,
        failure_rate=1.0,
        min_calls=1000,
        window=10.0,
        min_workers=1,
        reset_timeout=30.0,
        max_reset_timeout=60.0,
    ),
}


def records(heard: list[Change]) -> list[BreakerRecord]:
    """The breaker records heard, a reconcile's snapshot spelled out into its records."""
    flat: list[BreakerRecord] = []
    for change in heard:
        if isinstance(change, Snapshot):
            flat.extend(change.breakers.values())
        elif isinstance(change, BreakerRecord):
            flat.append(change)
    return flat


def log_lines(caplog: pytest.LogCaptureFixture, text: str, worker: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if text in r.getMessage() and f"worker {worker}" in r.getMessage()
    ]


async def every_operation(store: RedisStore) -> list[str]:
    """Call each operation once; the names of those that did not raise `StoreUnavailable`."""
    calls = {
        "report": store.report("t", "w", **TRIP_NOW),
        "transition": store.transition("t", expect_generation=0, state="open", reset_timeout=1),
        "snapshot": store.snapshot(),
        "take_lease": store.take_lease("l", "w", 1),
        "record_probe": store.record_probe("t", True, "", 1),
        "health": store.health(),
        "set_drained": store.set_drained("t", True),
        "drained": store.drained(),
        "lease": store.lease("b", 1, 10, 1, "w"),
        "adjust": store.adjust("b", 1, 10, 1),
    }
    answered = []
    for name, call in calls.items():
        try:
            await call
        except StoreUnavailable:
            continue
        answered.append(name)
    return answered


# -- between stores -------------------------------------------------------------------------


async def test_a_trip_reaches_another_store_within_50ms(redis_store: MakeStore) -> None:
    tripper, listener = redis_store("w1"), redis_store("w2")
    arrived: dict[str, float] = {}

    def note(change: Change) -> None:
        if isinstance(change, BreakerRecord):
            arrived.setdefault(change.target, time.perf_counter())

    await listener.start(note)

    latencies = []
    for i in range(20):
        target = f"t{i}"
        sent = time.perf_counter()
        record = await tripper.report(target, "w1", **TRIP_NOW)
        assert record is not None
        await eventually(partial(arrived.__contains__, target), within=0.5, step=0.0005)
        latencies.append(arrived[target] - sent)
    assert max(latencies) < 0.05, latencies


async def test_a_drain_reaches_another_store_within_50ms(redis_store: MakeStore) -> None:
    drainer, listener = redis_store("w1"), redis_store("w2")
    arrived: dict[tuple[str, bool], float] = {}

    def note(change: Change) -> None:
        if isinstance(change, DrainRecord):
            arrived.setdefault((change.target, change.drained), time.perf_counter())

    await listener.start(note)
    latencies = []
    for i in range(20):
        for drained in (True, False):
            sent = time.perf_counter()
            await drainer.set_drained(f"t{i}", drained)
            await eventually(partial(arrived.__contains__, (f"t{i}", drained)), within=0.5, step=0.0005)
            latencies.append(arrived[(f"t{i}", drained)] - sent)
    assert max(latencies) < 0.05, latencies
    assert (await listener.snapshot()).drained == frozenset()


async def test_the_listener_hears_its_own_store_too(redis_store: MakeStore) -> None:
    store = redis_store("w1")
    heard: list[Change] = []
    await store.start(heard.append)
    record = await store.transition("t", expect_generation=0, state="open", reset_timeout=1)
    await eventually(lambda: record in heard)


async def test_start_delivers_what_is_already_there(redis_store: MakeStore, raw: Any, namespace: str) -> None:
    await write_unannounced_breaker(raw, namespace, "t", state="open", generation=4)
    heard: list[Change] = []
    await redis_store("w1").start(heard.append)
    assert [(r.target, r.state, r.generation) for r in records(heard)] == [("t", "open", 4)]


async def test_the_periodic_reconcile_finds_what_pub_sub_lost(
    redis_store: MakeStore, raw: Any, namespace: str
) -> None:
    store = redis_store("w1", reconcile_interval=0.1)
    heard: list[Change] = []
    await store.start(heard.append)
    assert records(heard) == []
    await write_unannounced_breaker(raw, namespace, "t", state="open", generation=9)
    await eventually(lambda: any(r.generation == 9 for r in records(heard)), within=1.0)


async def test_a_malformed_message_or_a_failing_callback_does_not_stop_the_listener(
    redis_store: MakeStore, raw: Any, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = redis_store("w1")
    heard: list[Change] = []

    def fragile(change: Change) -> None:
        if isinstance(change, BreakerRecord) and change.target == "boom":
            raise RuntimeError("callback bug")

    await store.start(fragile)
    await store.start(heard.append)
    await raw.publish(f"{namespace}:breakers", "not json")
    await raw.publish(f"{namespace}:breakers", '{"no": "fields"}')
    await store.transition("boom", expect_generation=0, state="open", reset_timeout=1)
    await store.transition("fine", expect_generation=0, state="open", reset_timeout=1)
    await eventually(lambda: [r.target for r in records(heard)] == ["boom", "fine"])
    assert sum("malformed message" in r.getMessage() for r in caplog.records) == 2
    assert sum("callback failed" in r.getMessage() for r in caplog.records) == 1


async def test_worker_clocks_do_not_matter(redis_store: MakeStore) -> None:
    class SkewedClock(SystemClock):
        """A worker whose clocks are hours off."""

        def monotonic(self) -> float:
            return time.monotonic() + 7_200

        def wall(self) -> float:
            return time.time() - 3_600

    skewed, honest = redis_store("w1", clock=SkewedClock()), redis_store("w2")
    record = await skewed.transition("t", expect_generation=0, state="open", reset_timeout=0.3)
    assert record is not None and record.retry_in == 0.3
    assert (await honest.snapshot()).breakers["t"].retry_in == pytest.approx(0.3, abs=0.05)


async def test_every_key_lives_under_the_namespace(
    dedicated_redis: DedicatedRedis, redis_store: MakeStore
) -> None:
    store = redis_store("w1", url=dedicated_redis.url, ns="ns-a")
    await store.start(lambda r: None)
    assert await every_operation(store) == [
        "report",
        "transition",
        "snapshot",
        "take_lease",
        "record_probe",
        "health",
        "set_drained",
        "drained",
        "lease",
        "adjust",
    ]
    client = redis.asyncio.Redis.from_url(dedicated_redis.url, decode_responses=True)
    try:
        keys = sorted(await client.keys("*"))
        channels = await client.pubsub_channels()
    finally:
        await client.aclose()
    assert keys == [
        "ns-a:breaker-targets",
        "ns-a:breaker:t",
        "ns-a:bucket:b",
        "ns-a:drained",
        "ns-a:epoch",
        "ns-a:health-targets",
        "ns-a:health:t",
        "ns-a:held:b",
        "ns-a:holders:b",
        "ns-a:lease:l",
    ]
    assert channels == ["ns-a:breakers"]


# -- Redis away -----------------------------------------------------------------------------


async def test_an_unreachable_redis_fails_every_call_fast_and_logs_once(
    redis_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="router")
    store = redis_store("w1", url=f"redis://:hunter2secret@127.0.0.1:{free_port()}/0")
    started = time.perf_counter()
    await store.start(lambda r: None)
    assert time.perf_counter() - started < 0.5

    for _ in range(3):
        began = time.perf_counter()
        assert await every_operation(store) == []
        assert (time.perf_counter() - began) / 10 < 0.5
    with pytest.raises(StoreUnavailable) as caught:
        await store.drained()
    await asyncio.sleep(0.3)  # the listener keeps retrying, quietly

    assert "127.0.0.1" in str(caught.value)
    assert len(log_lines(caplog, "redis unreachable", "w1")) == 1, caplog.text
    assert store.reachable is False
    everything = "".join(traceback.format_exception(caught.value)) + caplog.text + repr(store)
    assert "hunter2secret" not in everything


async def test_a_refusing_redis_never_shows_the_password(redis_store: MakeStore, redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://:hunter2secret@")
    store = redis_store("w1", url=url)
    with pytest.raises(StoreUnavailable) as caught:
        await store.snapshot()
    assert "hunter2secret" not in "".join(traceback.format_exception(caught.value)) + repr(store)


async def test_a_redis_that_never_answers_times_out(redis_store: MakeStore) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the connection, answer nothing
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        store = redis_store("w1", url=f"redis://127.0.0.1:{port}/0", socket_timeout=0.1)
        began = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            await store.report("t", "w1", **TRIP_NOW)
        assert time.perf_counter() - began < 0.3
        await store.aclose()
    finally:
        server.close()
        await server.wait_closed()


async def test_the_listener_survives_a_redis_restart(
    dedicated_redis: DedicatedRedis, redis_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="router")
    # No periodic reconcile during the test: what arrives comes by pub/sub or by the
    # reconcile that follows a reconnect.
    listener = redis_store("w1", url=dedicated_redis.url, ns="ns", reconcile_interval=60)
    tripper = redis_store("w2", url=dedicated_redis.url, ns="ns")
    heard: list[Change] = []
    await listener.start(heard.append)

    first = await tripper.report("before", "w2", **TRIP_NOW)
    await eventually(lambda: first in heard, within=0.5)

    # A change whose announcement is lost, saved so the restarted server has it.
    client = redis.asyncio.Redis.from_url(dedicated_redis.url, decode_responses=True)
    await write_unannounced_breaker(client, "ns", "missed", state="open", generation=5)
    await client.save()
    await client.aclose()

    await dedicated_redis.astop()
    await eventually(lambda: listener.reachable is False, within=1.0)
    with pytest.raises(StoreUnavailable):
        await tripper.report("during", "w2", **TRIP_NOW)
    await asyncio.sleep(0.3)  # a few failed reconnects

    await dedicated_redis.astart()
    await eventually(lambda: any(r.target == "missed" for r in records(heard)), within=3.0)  # reconciled
    after = await tripper.transition("before", expect_generation=1, state="closed")  # scripts reloaded
    await eventually(lambda: after in heard, within=0.5)  # pub/sub again

    for worker in ("w1", "w2"):
        assert len(log_lines(caplog, "redis unreachable", worker)) == 1, caplog.text
        assert len(log_lines(caplog, "redis back", worker)) == 1, caplog.text


async def test_aclose_stops_the_listener(redis_store: MakeStore) -> None:
    store = redis_store("w1")
    await store.start(lambda r: None)
    assert any(t.get_name().startswith("router-state-listener") for t in asyncio.all_tasks())
    await store.aclose()
    assert not any(t.get_name().startswith("router-state-listener") for t in asyncio.all_tasks())
    await redis_store("w2").aclose()  # never started


def test_the_package_exports() -> None:
    import router.state

    assert sorted(router.state.__all__) == [
        "BreakerRecord",
        "Change",
        "DrainRecord",
        "Grant",
        "HealthRecord",
        "MemoryStore",
        "RedisStore",
        "Snapshot",
        "StateStore",
        "StoreUnavailable",
    ]
    assert router.state.RedisStore is RedisStore


async def test_a_subscription_that_went_silent_is_replaced(
    redis_store: MakeStore, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="router")
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with FreezingProxy(port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        listener = redis_store("w1", url=url, reconcile_interval=0.1, socket_timeout=0.1)
        tripper = redis_store("w2")  # straight to Redis
        heard: list[Change] = []
        await listener.start(heard.append)
        await asyncio.sleep(0.3)  # a few quiet intervals: PINGs answered, nothing restarts
        assert not log_lines(caplog, "redis unreachable", "w1")

        proxy.freeze()  # the subscription and the command connection
        await tripper.transition("t", expect_generation=0, state="open", reset_timeout=1)
        await eventually(lambda: any(r.target == "t" for r in records(heard)), within=1.0)
        assert len(log_lines(caplog, "redis unreachable", "w1")) == 1
        assert len(log_lines(caplog, "redis back", "w1")) == 1


async def test_a_subscription_that_stops_answering_ping_is_replaced(
    redis_store: MakeStore, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="router")
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with FreezingProxy(port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        listener = redis_store("w1", url=url, reconcile_interval=0.1, socket_timeout=0.05)
        tripper = redis_store("w2")
        heard: list[Change] = []
        await listener.start(heard.append)

        proxy.freeze(subscriptions_only=True)  # commands still work, so reconciles succeed
        await eventually(lambda: bool(log_lines(caplog, "stopped answering PING", "w1")), within=1.0)
        await eventually(lambda: bool(log_lines(caplog, "redis back", "w1")), within=1.0)
        record = await tripper.transition("t", expect_generation=0, state="open", reset_timeout=1)
        await eventually(lambda: record in heard, within=0.05)  # by pub/sub: faster than a reconcile


async def test_a_virtual_clock_does_not_cut_real_io_short(redis_store: MakeStore) -> None:
    # The router may hand its FakeClock down; deadlines on sockets must still be real time.
    store = redis_store("w1", clock=FakeClock())
    heard: list[Change] = []
    await store.start(heard.append)
    await asyncio.sleep(0.05)
    assert await every_operation(store) == [
        "report",
        "transition",
        "snapshot",
        "take_lease",
        "record_probe",
        "health",
        "set_drained",
        "drained",
        "lease",
        "adjust",
    ]
    await eventually(lambda: any(r.target == "t" for r in records(heard)), within=0.5)
