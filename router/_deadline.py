"""A deadline kept by one timer on the injected clock, for awaits that come often: a stream's chunks.

`asyncio.timeout` arms and cancels a timer and runs two coroutines per scope; a stream read
under one per chunk spent about a third of its CPU there. A `Deadline` is armed once: a wait only
notes when it began, and the timer, when it fires, is armed again for the deadline then due if
that has not passed (at most once per idle period), else it cancels the waiting task, whose wait
raises `TimeoutError`, as `asyncio.timeout` does (a cancellation from elsewhere stays one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from router.clock import Clock, Timer

__all__ = ["Deadline"]

_T = TypeVar("_T")


class Deadline:
    """`deadline`, and with `idle` the silence each wait may last; time between waits is not counted.

    `deadline` may be moved on (a stream's first token's, then its own); `stop` calls the timer off.
    """

    __slots__ = ("cancelling", "clock", "deadline", "expired", "idle", "loop", "since", "task", "timer")

    def __init__(self, clock: Clock, deadline: float, idle: float | None = None) -> None:
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self.deadline = deadline
        self.idle = idle
        self.since = 0.0  # when the current wait began
        self.task: asyncio.Task[object] | None = None  # the task waiting, None between waits
        self.cancelling = 0
        self.timer: Timer | None = None
        self.expired = False

    def due(self) -> float:
        idle = self.idle
        return self.deadline if idle is None else min(self.deadline, self.since + idle)

    def stalled(self) -> bool:
        """Whether the wait that expired ran out of idle time (else, of the deadline)."""
        return self.due() < self.deadline

    async def wait(self, awaitable: Awaitable[_T]) -> _T:
        """What `awaitable` gives, or `TimeoutError` when the deadline due passes first."""
        self.since = self.clock.monotonic()
        if self.timer is None:
            self.timer = self.clock.call_at(self.due(), self._fire)
        task = asyncio.current_task(self.loop)
        assert task is not None
        self.task, self.cancelling = task, task.cancelling()
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self.expired and task.uncancel() <= self.cancelling:
                raise TimeoutError from None
            raise
        finally:
            self.task = None

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fire(self) -> None:
        self.timer = None
        if self.task is None or self.expired:
            return  # nobody waits: the next wait arms the timer again
        due = self.due()
        if self.clock.monotonic() < due:
            self.timer = self.clock.call_at(due, self._fire)
            return
        self.expired = True
        self.task.cancel()
