"""The load: requests at a rate (open loop) or at a concurrency (closed loop), for a duration.

A `Contender` is what the load is sent through (our `Router`, or LiteLLM's); it never raises
for a failed request, it says how the request ended. Every request becomes a `RequestEvent` in
the sink, stamped in seconds from `origin`; a request still unanswered `drain` seconds after the
load ends is cancelled and recorded as lost (`unfinished`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

from router.chaos.recording import RequestEvent, StatusEvent, TransitionEvent
from router.chaos.scenario import Load
from router.clock import Clock, SystemClock

__all__ = ["STATUS_INTERVAL", "Answer", "Contender", "Sink", "drive"]

STATUS_INTERVAL = 0.25
"""Seconds between two status snapshots of a worker (for live displays)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """How one request ended: `target` answered it, or `error` says why nobody did.

    `recovery`: how a streamed answer outlived a stream that broke after output began, as its caller
    saw it: "continued" (the text just went on), "restarted" (a `StreamRestart` came first), or None.
    """

    target: str | None
    error: str | None = None
    cost_usd: float = 0.0
    attempts: tuple[tuple[str, str], ...] = ()
    recovery: str | None = None


class Contender(Protocol):
    name: str
    origin: float  # the load's start (monotonic): what the events it reports count from

    async def start(self) -> None: ...

    async def send(self, load: Load) -> Answer: ...

    async def status(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] | None:
        """(target, breaker state) and (target, health) pairs, or None if it has no such thing."""

    async def aclose(self) -> None: ...


class Sink(Protocol):
    def request(self, event: RequestEvent) -> None: ...

    def transition(self, event: TransitionEvent) -> None: ...

    def status(self, event: StatusEvent) -> None: ...


async def drive(
    contender: Contender,
    load: Load,
    *,
    duration: float,
    origin: float,
    sink: Sink,
    worker: int = 0,
    drain: float = 30.0,
    clock: Clock | None = None,
) -> None:
    """Send the load from `origin` (on `clock`, default the system's monotonic clock) for `duration`
    seconds, then wait up to `drain`."""
    run = _Drive(contender, load, sink, worker, origin, clock or SystemClock())
    contender.origin = origin
    reporter = asyncio.create_task(run.report_status())
    await run.clock.sleep(max(0.0, -run.now()))
    tasks: set[asyncio.Task[None]] = set()
    try:
        await run.start(tasks, duration)
        await run.wait(tasks, duration, drain)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter


@dataclass(frozen=True, slots=True)
class _Drive:
    """One worker's sending of the load: its requests, recorded in the sink, and its status reports."""

    contender: Contender
    load: Load
    sink: Sink
    worker: int
    origin: float
    clock: Clock

    def now(self) -> float:
        return self.clock.monotonic() - self.origin

    async def start(self, tasks: set[asyncio.Task[None]], duration: float) -> None:
        """Start the load's requests into `tasks`: at its rate (open loop) or its concurrency (closed)."""
        load = self.load
        if load.rate is not None:
            number = 0
            while (at := number / load.rate) < duration:
                await self.clock.sleep(max(0.0, at - self.now()))
                tasks.add(asyncio.create_task(self.one()))
                number += 1
        else:
            assert load.concurrency is not None
            tasks.update(asyncio.create_task(self.closed_loop(duration)) for _ in range(load.concurrency))

    async def wait(self, tasks: set[asyncio.Task[None]], duration: float, drain: float) -> None:
        """Wait for `tasks` until `drain` seconds after the load ends."""
        if tasks:
            clock = self.clock
            with contextlib.suppress(TimeoutError):
                async with clock.timeout_at(clock.monotonic() + max(0.0, duration - self.now()) + drain):
                    await asyncio.wait(tasks)

    async def one(self) -> None:
        start = self.now()
        try:
            answer = await self.contender.send(self.load)
        except asyncio.CancelledError:
            self.sink.request(RequestEvent(self.worker, start, self.now(), None, "unfinished"))
            raise
        self.sink.request(
            RequestEvent(
                self.worker,
                start,
                self.now(),
                answer.target,
                answer.error,
                answer.cost_usd,
                answer.attempts,
                answer.recovery,
            )
        )

    async def closed_loop(self, duration: float) -> None:
        while self.now() < duration:
            await self.one()

    async def report_status(self) -> None:
        while True:
            try:
                status = await self.contender.status()
            except Exception:  # a display's snapshot; the state store may be away, the load goes on
                status = None
            if status is not None:
                self.sink.status(StatusEvent(self.worker, self.now(), *status))
            await self.clock.sleep(STATUS_INTERVAL)
