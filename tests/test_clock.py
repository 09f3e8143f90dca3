"""The fake clock: virtual sleeps and timeouts, in order, without real waiting."""

from __future__ import annotations

import asyncio
import time

import pytest

from router.clock import SystemClock
from router.testing import FakeClock


async def test_sleeps_wake_in_order_in_virtual_time():
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic() - 1000.0))

    started = time.perf_counter()
    await asyncio.gather(sleeper("late", 300), sleeper("early", 5), sleeper("middle", 60))
    assert woke == [("early", 5), ("middle", 60), ("late", 300)]
    assert time.perf_counter() - started < 1.0


async def test_timeout_fires_at_its_virtual_deadline():
    clock = FakeClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout_at(clock.monotonic() + 2.0):
            await clock.sleep(10)
    assert clock.monotonic() == pytest.approx(1002.0)


async def test_a_timeout_that_does_not_fire_leaves_no_trace():
    clock = FakeClock()
    async with clock.timeout_at(clock.monotonic() + 2.0):
        await clock.sleep(1)
    await clock.sleep(5)
    assert clock.monotonic() == pytest.approx(1006.0)


def test_wall_time_moves_with_monotonic_time():
    clock = FakeClock(start=10.0, wall_start=1_000.0, auto_advance=False)
    clock.advance(5)
    assert (clock.monotonic(), clock.wall()) == (15.0, 1_005.0)


async def test_system_clock_timeout_uses_the_loop():
    clock = SystemClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout_at(clock.monotonic() + 0.01):
            await asyncio.sleep(1)
