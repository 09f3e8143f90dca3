"""Injected time: every timer, sleep and deadline in the router goes through a `Clock`.

The system clock is the default; `router.testing.FakeClock` drives the same code in virtual
time so tests of retries, breakers and deadlines never sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Timer(Protocol):
    """What `Clock.call_at` returns: a timer that may be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for local timers and deadlines."""

    def wall(self) -> float:
        """Seconds since the epoch; for state shared with other processes."""

    async def sleep(self, seconds: float) -> None: ...

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[object]:
        """A scope that raises `TimeoutError` when `monotonic()` reaches `when`."""

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` on the running loop when `monotonic()` reaches `when` (unless cancelled)."""


class SystemClock:
    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[object]:
        # Translate to the loop's own clock: uvloop and friends need not use time.monotonic.
        loop = asyncio.get_running_loop()
        return asyncio.timeout_at(loop.time() + (when - time.monotonic()))

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + (when - time.monotonic()), callback)
