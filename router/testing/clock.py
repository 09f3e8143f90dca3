"""A virtual clock for tests: sleeps and timeouts resolve without real waiting."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

__all__ = ["FakeClock"]


class _Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _FakeTimeout:
    """An `asyncio.Timeout` whose expiry is driven by a `FakeClock` instead of the loop."""

    def __init__(self, clock: FakeClock, when: float) -> None:
        self._clock = clock
        self._when = when
        self._timeout = asyncio.Timeout(None)
        self._timer: _Timer | None = None

    async def __aenter__(self) -> asyncio.Timeout:
        await self._timeout.__aenter__()
        self._timer = self._clock.call_at(self._when, self._expire)
        return self._timeout

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancelled = True
        await self._timeout.__aexit__(exc_type, exc_val, exc_tb)

    def _expire(self) -> None:
        # Expire on the loop's next turn, through asyncio's own cancellation machinery.
        self._timeout.reschedule(asyncio.get_running_loop().time())


class FakeClock:
    """Virtual monotonic and wall time for code that takes a `Clock`.

    With `auto_advance` (the default) time jumps to the next timer whenever the tasks under
    test have settled, so `await clock.sleep(30)` returns at once with `monotonic()` 30 s
    later. That assumes the code waits only on this clock: tests with real sockets use the
    system clock. `advance()` moves time by hand.
    """

    def __init__(
        self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0, *, auto_advance: bool = True
    ):
        self._now = start
        self._wall_delta = wall_start - start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._auto_advance = auto_advance
        self._driver: asyncio.Task[None] | None = None

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_delta

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        if self._auto_advance and self._driver is None:
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_at(self._now + seconds, wake)
        try:
            await future
        finally:
            timer.cancelled = True

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[object]:
        return _FakeTimeout(self, when)

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due on the way, in order."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._now = max(self._now, when)
                timer.callback()
        self._now = target

    def _next_due(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def _drive(self) -> None:
        try:
            while True:
                # Let every runnable task reach its next wait before time moves.
                for _ in range(50):
                    await asyncio.sleep(0)
                due = self._next_due()
                if due is None:
                    return
                self.advance(max(0.0, due - self._now))
        finally:
            self._driver = None
