"""One line when the store goes and one when it is back, per outage, however often it flaps.

`Outages` decides; `RedisStore` (its "redis unreachable" / "redis back" lines) and `Fleet`
("shared state unreachable" / "reachable again") follow it. The Redis case runs against a
dedicated server frozen and thawed (SIGSTOP, SIGCONT) a few times in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import pytest

from router._fleet import Fleet
from router.state import MemoryStore, RedisStore, StoreUnavailable
from router.state.outages import SETTLE, Outages
from router.testing import FakeClock

from ..redis_support import DedicatedRedis


def test_a_flap_while_settling_is_the_same_outage_and_a_later_one_is_new() -> None:
    clock = FakeClock(auto_advance=False)
    outages = Outages(clock)
    assert outages.back() is False  # nothing to recover from
    said = []
    for at, event in [
        (0, "lost"), (5, "back"), (10, "lost"), (12, "back"), (30, "lost"), (31, "back"),  # flapping
        (31 + SETTLE + 1, "lost"), (80, "back"),  # settled, then a new outage
    ]:  # fmt: skip
        clock.advance(at - (clock.monotonic() - 1000.0))
        said.append((at, event, outages.lost() if event == "lost" else outages.back()))
    assert [(at, event) for at, event, told in said if told] == [
        (0, "lost"),
        (5, "back"),
        (62, "lost"),
        (80, "back"),
    ]


class FlappingStore(MemoryStore):
    """A MemoryStore that is `down` (every call unavailable) when the test says."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.down = False

    async def snapshot(self) -> Any:
        if self.down:
            raise StoreUnavailable("down")
        return await super().snapshot()


async def test_a_fleet_says_once_that_it_lost_the_store_and_once_that_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(auto_advance=False)
    store = FlappingStore(clock)
    fleet = Fleet(store, "w1", clock=clock, probe_lease=10.0, on_drain=lambda target, drained: None)
    caplog.set_level(logging.WARNING, logger="router")
    # Down for 2 s, up for 3 s, ten times: a store flapping for 50 s; then up for good.
    for _ in range(10):
        store.down = True
        await fleet.call(store.snapshot())
        clock.advance(2.0)
        store.down = False
        await fleet.call(store.snapshot())
        assert fleet.connected
        clock.advance(3.0)
    for _ in range(20):
        await asyncio.sleep(0)  # the rejoin and reconcile tasks finish
    lines = [r.getMessage() for r in caplog.records if r.name == "router"]
    assert sum("shared state unreachable" in line for line in lines) == 1, lines
    assert sum("shared state reachable again" in line for line in lines) == 1, lines
    # Past the settling time a new outage is a new pair of lines.
    clock.advance(SETTLE)
    store.down = True
    await fleet.call(store.snapshot())
    store.down = False
    await fleet.call(store.snapshot())
    lines = [r.getMessage() for r in caplog.records if r.name == "router"]
    assert sum("shared state unreachable" in line for line in lines) == 2, lines
    assert sum("shared state reachable again" in line for line in lines) == 2, lines
    await fleet.aclose()


async def test_a_flapping_redis_gets_one_unreachable_line_and_one_back_line(
    dedicated_redis: DedicatedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="router")
    store = RedisStore(dedicated_redis.url, f"flap:{uuid.uuid4().hex[:8]}", worker="w1", socket_timeout=0.05)
    await store.start(lambda change: None)
    try:
        await store.snapshot()
        for _ in range(5):  # frozen 0.3 s, answering 0.3 s, five times
            dedicated_redis.freeze()
            with contextlib.suppress(StoreUnavailable):
                await store.snapshot()
            await asyncio.sleep(0.2)
            dedicated_redis.thaw()
            await asyncio.sleep(0.05)
            await store.snapshot()
            await asyncio.sleep(0.25)
    finally:
        dedicated_redis.thaw()
        await store.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "router"]
    assert sum(line.startswith("redis unreachable") for line in lines) == 1, lines
    assert sum(line.startswith("redis back") for line in lines) == 1, lines
