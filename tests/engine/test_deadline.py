"""One timer keeps a stream's deadlines (router._deadline): it times out a wait as asyncio.timeout
would, counts only the time spent waiting against the idle gap, and leaves other cancellations be."""

from __future__ import annotations

import asyncio

import pytest

from router._deadline import Deadline
from router.clock import SystemClock
from router.testing import FakeClock


async def test_a_wait_past_the_deadline_times_out() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, clock.monotonic() + 5.0)
    assert await deadline.wait(clock.sleep(4.0)) is None
    with pytest.raises(TimeoutError):
        await deadline.wait(clock.sleep(4.0))  # 8 s in: the deadline passed at 5
    assert clock.monotonic() == pytest.approx(1_005.0)
    assert not deadline.stalled()  # the deadline, not the idle gap


async def test_only_the_time_spent_waiting_counts_against_the_idle_gap() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, clock.monotonic() + 60.0, idle=2.0)
    for _ in range(5):
        await deadline.wait(clock.sleep(1.5))  # each wait within the gap; 7.5 s in all
        await clock.sleep(3.0)  # the reader's own time between chunks is no silence
    with pytest.raises(TimeoutError):
        await deadline.wait(clock.sleep(2.5))
    assert deadline.stalled()
    assert clock.monotonic() == pytest.approx(1_000.0 + 5 * 4.5 + 2.0)


async def test_a_moved_deadline_holds_and_stop_calls_the_timer_off() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, clock.monotonic() + 1.0)  # a first token's
    await deadline.wait(clock.sleep(0.5))
    deadline.deadline = clock.monotonic() + 10.0  # the stream's own, from the first token on
    await deadline.wait(clock.sleep(3.0))  # past the first deadline: the timer armed again
    deadline.stop()
    assert deadline.timer is None


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    clock = SystemClock()
    deadline = Deadline(clock, clock.monotonic() + 30.0)
    waiting = asyncio.ensure_future(deadline.wait(asyncio.sleep(10)))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    deadline.stop()


async def test_on_the_system_clock_a_wait_times_out_and_its_task_goes_on() -> None:
    clock = SystemClock()
    deadline = Deadline(clock, clock.monotonic() + 0.02)
    with pytest.raises(TimeoutError):
        await deadline.wait(asyncio.sleep(5))
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # uncancelled
    await asyncio.sleep(0)  # not cancelled again
