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
    clock = clock or SystemClock()

    def now() -> float:
        return clock.monotonic() - origin

    async def one() -> None:
        start = now()
        try:
            answer = await contender.send(load)
        except asyncio.CancelledError:
            sink.request(RequestEvent(worker, start, now(), None, "unfinished"))
            raise
        sink.request(
            RequestEvent(
                worker,
                start,
                now(),
                answer.target,
                answer.error,
                answer.cost_usd,
                answer.attempts,
                answer.recovery,
            )
        )

    async def closed_loop() -> None:
        while now() < duration:
            await one()

    async def report_status() -> None:
        while True:
            try:
                status = await contender.status()
            except Exception:  # a display's snapshot; the state store may be away, the load goes on
                status = None
            if status is not None:
                sink.status(StatusEvent(worker, now(), *status))
            await clock.sleep(STATUS_INTERVAL)

    contender.origin = origin
    reporter = asyncio.create_task(report_status())
    await clock.sleep(max(0.0, -now()))
    tasks: set[asyncio.Task[None]] = set()
    try:
        if load.rate is not None:
            number = 0
            while (at := number / load.rate) < duration:
                await clock.sleep(max(0.0, at - now()))
                tasks.add(asyncio.create_task(one()))
                number += 1
        else:
            assert load.concurrency is not None
            tasks = {asyncio.create_task(closed_loop()) for _ in range(load.concurrency)}
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with clock.timeout_at(clock.monotonic() + max(0.0, duration - now()) + drain):
                    await asyncio.wait(tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
