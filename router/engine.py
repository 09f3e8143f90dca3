"""One request: plan -> candidates -> attempts -> result (retry, failover, hedge, deadline).

Each request runs in a `_Run`, which walks the candidates in "lanes": one lane normally, a
second one when `hedge_after` passes without an answer. A lane tries one target at a time:
breaker gate, limiter, the call under `min(per_attempt, deadline)`, then retry, fail over or
raise by the error's kind and the route's rules. Every step lands in the attempt trail.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from router.budgets import Budgets, Reservation
from router.clock import Clock
from router.errors import AllTargetsFailed, ErrorKind, ProviderError, RouterError, StreamBroken
from router.events import AttemptEvent, Event, FailoverEvent, RetryEvent
from router.policy.compile import Plan, RoutePlan
from router.providers.base import Call, Chunk
from router.resilience.backoff import backoff_delay
from router.resilience.limiter import Limiter
from router.resilience.retry_budget import RetryBudget
from router.results import Attempt, Completion, Outcome, ToolCall, Usage
from router.selection import Request, TargetRuntime, order_candidates, over_budget, unavailable

__all__ = ["Engine"]

logger = logging.getLogger("router")

_T = TypeVar("_T")


class _Ticket:
    """What one call holds, given back once by `settle`: its place among the runtime's calls in
    flight, a limiter slot, and the budgets' reserved dollars."""

    __slots__ = ("budgets", "limiter", "reservation", "runtime", "tokens")

    def __init__(
        self,
        runtime: TargetRuntime | None,
        limiter: Limiter | None = None,
        tokens: int = 0,
        budgets: Budgets | None = None,
        reservation: Reservation | None = None,
    ) -> None:
        self.runtime = runtime
        self.limiter = limiter
        self.tokens = tokens
        self.budgets = budgets
        self.reservation = reservation
        if runtime is not None:
            runtime.in_flight += 1

    def settle(self, usage: Usage | None) -> None:
        """The call is over; `usage` (None: it failed) corrects the estimates."""
        runtime = self.runtime
        if runtime is None:
            return
        runtime.in_flight -= 1
        if usage is not None:
            runtime.outputs.add(usage.output_tokens)  # what the next estimates learn from
        if self.limiter is not None:
            self.limiter.release(self.tokens, usage.total_tokens if usage else None)
        if self.budgets is not None and self.reservation is not None:
            cost = runtime.plan.cost(usage.input_tokens, usage.output_tokens) if usage else 0.0
            self.budgets.settle(self.reservation, cost)


_NO_TICKET = _Ticket(None)  # an open stream's until `_try_target` hands it the call's own


@dataclass(slots=True)
class _Answer:
    """A whole answer from one target, not yet turned into a Completion."""

    runtime: TargetRuntime
    text: str
    usage: Usage
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(slots=True)
class _OpenStream:
    """A stream that has produced its first text: from here on, failover is no longer free."""

    runtime: TargetRuntime
    chunks: AsyncIterator[Chunk]
    started: float
    deadline: float
    first: str
    finish_reason: str | None = None
    usage: Usage | None = None
    ended: bool = False
    received: list[str] = field(default_factory=list)
    ticket: _Ticket = _NO_TICKET
    tool_calls: tuple[ToolCall, ...] = ()

    def answer(self) -> _Answer:
        text = "".join(self.received)
        return _Answer(self.runtime, text, self.usage or Usage(), self.finish_reason, self.tool_calls)


class _Route:
    __slots__ = ("plan", "runtimes")

    def __init__(self, plan: RoutePlan, runtimes: tuple[TargetRuntime, ...]) -> None:
        self.plan = plan
        self.runtimes = runtimes


class Engine:
    """Executes requests against a compiled plan; owns nothing but references."""

    def __init__(
        self,
        plan: Plan,
        runtimes: Mapping[str, TargetRuntime],
        *,
        clock: Clock,
        rng: random.Random,
        emit: Callable[[Event], None] | None = None,
        retry_budget: RetryBudget | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.plan = plan
        self.clock = clock
        self.rng = rng
        self.emit = emit
        self._budgets = budgets
        budget = plan.retry_budget
        self.retry_budget = retry_budget or RetryBudget(
            ratio=budget.ratio, min_retries=budget.min_retries, window=budget.window, clock=clock
        )
        self._routes = {
            name: _Route(route, tuple(runtimes[target.name] for target in route.targets))
            for name, route in plan.routes.items()
        }

    @property
    def budgets(self) -> Budgets:
        assert self._budgets is not None  # a plan with budgets gets a Budgets (see Router)
        return self._budgets

    def knows(self, route: str) -> bool:
        return route in self._routes

    def add_route(self, plan: RoutePlan, runtimes: tuple[TargetRuntime, ...]) -> None:
        self._routes[plan.name] = _Route(plan, runtimes)

    def _start(self, route_name: str, request: Request, deadline: float | None) -> _Run:
        route = self._routes.get(route_name)
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            raise RouterError(f"unknown route {route_name!r}; routes: {known}")
        self.retry_budget.on_request()
        return _Run(self, route, request, deadline)

    async def complete(self, route: str, request: Request, deadline: float | None = None) -> Completion:
        run = self._start(route, request, deadline)
        recovery = run.route.stream_recovery or "restart"
        answer = await run.first(run.call_buffered if run.route.stream_upstream else run.call_reply, recovery)
        return run.completion(answer)

    async def stream(
        self, route: str, request: Request, deadline: float | None = None
    ) -> AsyncGenerator[str | Completion, None]:
        run = self._start(route, request, deadline)
        if (run.route.stream_recovery or "raise") == "restart":
            # Restarting on another target after the caller saw text would repeat it: buffer instead.
            answer = await run.first(run.call_buffered, "restart")
            if answer.text:
                yield answer.text
            yield run.completion(answer)
            return
        opened = await run.first(run.open_stream, "raise")
        async with aclosing(run.drain(opened)) as deltas:
            async for delta in deltas:
                yield delta
        yield run.completion(run.finish_stream(opened))


class _Run:
    """The state of one request: its deadline, its trail, and the candidates left."""

    __slots__ = (
        "deadline",
        "engine",
        "min_window",
        "plan_route",
        "recovery",
        "request",
        "route",
        "started",
        "trail",
        "warnings",
    )

    def __init__(self, engine: Engine, route: _Route, request: Request, deadline: float | None) -> None:
        self.engine = engine
        self.plan_route = route
        self.route = route.plan
        self.request = request
        self.started = engine.clock.monotonic()
        total = route.plan.total if deadline is None else min(route.plan.total, deadline)
        self.deadline = self.started + total
        self.trail: list[Attempt] = []
        self.warnings: list[str] = []
        self.min_window: int | None = None
        self.recovery = "raise"

    # -- the walk over candidates ----------------------------------------------------------

    async def first(self, invoke: Callable[[TargetRuntime, float], Awaitable[_T]], recovery: str) -> _T:
        """The first value a candidate produces, trying them in order (and hedging, if asked)."""
        self.recovery = recovery
        candidates = order_candidates(
            self.route, self.plan_route.runtimes, self.request, self.engine.rng, self.started
        )
        if not candidates:
            raise AllTargetsFailed(
                self.route.name, (), "no target fits the request (capabilities, context window)"
            )
        pending = iter(candidates)
        if self.route.hedge_after is None:
            result = await self._lane(pending, invoke)
        else:
            result = await self._race(pending, invoke, self.route.hedge_after)
        if result is None:
            reason = "deadline exceeded" if self.engine.clock.monotonic() >= self.deadline else ""
            raise AllTargetsFailed(self.route.name, self.trail, reason)
        return result

    async def _race(
        self,
        pending: Iterator[TargetRuntime],
        invoke: Callable[[TargetRuntime, float], Awaitable[_T]],
        after: float,
    ) -> _T | None:
        clock = self.engine.clock
        lanes = {asyncio.ensure_future(self._lane(pending, invoke))}
        hedge: asyncio.Future[None] | None = asyncio.ensure_future(clock.sleep(after))
        won: _T | None = None
        try:
            while lanes:
                done, _ = await asyncio.wait(
                    lanes | {hedge} if hedge else lanes, return_when=asyncio.FIRST_COMPLETED
                )
                for lane in done & lanes:
                    lanes.discard(lane)
                    won = lane.result()
                    if won is not None:
                        return won
                if hedge is not None and hedge in done:
                    hedge = None
                    lanes.add(asyncio.ensure_future(self._lane(pending, invoke)))
            return None
        finally:
            await self._call_off([*lanes, *([hedge] if hedge else [])], won)

    async def _call_off(self, leftovers: list[asyncio.Future[Any]], won: object) -> None:
        """Cancel what still runs and wait: the losers give back their permits before we return.

        A lane that finished in the same turn as the winner holds an open stream: it is let go.
        A cancellation meanwhile still waits for the losers, then lets the winner go too.
        """
        for task in leftovers:
            task.cancel()
        cancelled = await _wait_out(leftovers)
        unread = [opened for lane in leftovers if (opened := _stream_of(lane)) is not None]
        if cancelled and isinstance(won, _OpenStream):
            unread.append(won)
        for opened in unread:
            await self._abandon(opened)
        if cancelled:
            raise asyncio.CancelledError

    async def _lane(
        self, pending: Iterator[TargetRuntime], invoke: Callable[[TargetRuntime, float], Awaitable[_T]]
    ) -> _T | None:
        for runtime in pending:
            window = runtime.plan.context_window
            if self.min_window is not None and (window is None or window <= self.min_window):
                continue  # only a larger window can help after a context_length error
            if over_budget(self.route, runtime.plan, self.request):
                self._skip(runtime, Outcome.OVER_BUDGET)
                continue
            why = unavailable(runtime, self.route, self.engine.clock.monotonic())
            if why is not None:
                self._skip(runtime, why)
                continue
            result = await self._try_target(runtime, invoke)
            if result is not None:
                return result
            if self.engine.clock.monotonic() >= self.deadline:
                return None
        return None

    async def _try_target(
        self, runtime: TargetRuntime, invoke: Callable[[TargetRuntime, float], Awaitable[_T]]
    ) -> _T | None:
        clock = self.engine.clock
        breaker = runtime.breaker
        tries = 0
        while True:
            if not breaker.admit():
                self._skip(runtime, Outcome.BREAKER_OPEN)
                return None
            if clock.monotonic() >= self.deadline:
                breaker.release()
                self._skip(runtime, Outcome.DEADLINE)
                return None
            ticket = await self._admit_or_release(runtime)
            if isinstance(ticket, Outcome):
                breaker.release()
                self._skip(runtime, ticket)
                return None
            tries += 1
            started = clock.monotonic()
            try:
                value = await invoke(runtime, started)
            except ProviderError as error:
                ticket.settle(None)
                if not error.target:
                    error.target = runtime.plan.name
                self._failed(runtime, error, started)
                if (
                    error.kind in self.route.retry_on
                    and tries < self.route.attempts
                    and not error.kind.blames_request  # whatever the policy says
                ):
                    delay = self._retry_delay(error, tries)
                    if delay is not None:
                        if self.engine.emit is not None:
                            self.engine.emit(
                                RetryEvent(self.route.name, runtime.plan.name, error.kind, delay)
                            )
                        await clock.sleep(delay)
                        continue
                if error.kind in self.route.failover_on and not self._handed_over(error):
                    if error.kind is ErrorKind.CONTEXT_LENGTH:
                        self.min_window = max(self.min_window or 0, runtime.plan.context_window or 0)
                    if (emit := self.engine.emit) is not None:
                        emit(FailoverEvent(self.route.name, runtime.plan.name, error.kind))
                    return None
                error.attempts = tuple(self.trail)
                raise
            except BaseException:
                ticket.settle(None)
                breaker.release()
                self._record(runtime, Outcome.CANCELLED, started, "cancelled")
                raise
            if isinstance(value, _OpenStream):
                value.ticket = ticket
                return value  # its outcome is recorded when the caller has read it to the end
            assert isinstance(value, _Answer)
            ticket.settle(value.usage)
            breaker.record_success()
            now = clock.monotonic()
            runtime.observe(now - started)
            runtime.outcome(True, now)
            self._record(runtime, Outcome.OK, started)
            return value

    async def _admit_or_release(self, runtime: TargetRuntime) -> _Ticket | Outcome:
        """`_admit`, giving back the breaker's permit (maybe the one half-open probe) if it raises."""
        started = self.engine.clock.monotonic()
        try:
            return await self._admit(runtime)
        except BaseException as error:
            runtime.breaker.release()
            if isinstance(error, asyncio.CancelledError):
                self._record(runtime, Outcome.CANCELLED, started, "cancelled")
            raise

    async def _admit(self, runtime: TargetRuntime) -> _Ticket | Outcome:
        """Take the limiter's slot and the budgets' dollars for one call, or say why not (an outcome)."""
        limiter = runtime.limiter
        budgets = self.route.budgets
        if limiter is None and not budgets:
            return _Ticket(runtime)
        request = self.request
        output = runtime.output_estimate(request)
        tokens = request.input_tokens + output
        if limiter is not None and not await limiter.acquire(tokens, self.deadline):
            return Outcome.LIMITED
        reservation = None
        if budgets:
            estimate = runtime.plan.cost(request.input_tokens, output)
            try:
                reservation = await self.engine.budgets.reserve(self.route, runtime.plan, estimate)
            finally:
                if reservation is None and limiter is not None:
                    limiter.release(tokens, 0)  # the call never goes out: every token goes back
            if reservation is None:
                return Outcome.OVER_BUDGET
        return _Ticket(runtime, limiter, tokens, self.engine.budgets if reservation else None, reservation)

    def _handed_over(self, error: ProviderError) -> bool:
        """Did the caller ask to get a broken stream's partial text rather than a restart elsewhere?"""
        return isinstance(error, StreamBroken) and bool(error.received) and self.recovery == "raise"

    def _retry_delay(self, error: ProviderError, retry: int) -> float | None:
        """How long to wait before retrying, or None to move on instead."""
        route = self.route
        if route.honor_retry_after and error.retry_after is not None:
            # A long Retry-After means "go elsewhere": the next target is better than waiting.
            if error.retry_after > route.backoff_max:
                return None
            delay = error.retry_after
        else:
            delay = backoff_delay(
                retry,
                base=route.backoff_base,
                cap=route.backoff_max,
                jitter=route.jitter,
                rand=self.engine.rng.random,
            )
        if self.engine.clock.monotonic() + delay >= self.deadline:
            return None
        if not self.engine.retry_budget.try_retry():
            self.warnings.append("retry budget spent: moved on without retrying")
            return None
        return delay

    # -- the trail -------------------------------------------------------------------------

    def _record(
        self,
        runtime: TargetRuntime,
        outcome: Outcome | ErrorKind,
        started: float,
        error: str | None = None,
        status: int | None = None,
    ) -> None:
        plan = runtime.plan
        latency = self.engine.clock.monotonic() - started
        self.trail.append(Attempt(plan.name, plan.provider, plan.model, outcome, latency, error, status))
        emit = self.engine.emit
        if emit is not None:
            route, metadata = self.route.name, self.request.metadata
            emit(AttemptEvent(route, plan.name, plan.provider, plan.model, outcome, latency, error, metadata))

    def _skip(self, runtime: TargetRuntime, outcome: Outcome) -> None:
        self._record(runtime, outcome, self.engine.clock.monotonic())

    def _failed(self, runtime: TargetRuntime, error: ProviderError, started: float) -> None:
        if not error.kind.counts_against_breaker:
            runtime.breaker.release()
        else:
            runtime.breaker.record_failure(error)
            runtime.outcome(False, self.engine.clock.monotonic())
        self._record(runtime, error.kind, started, error.message, error.status)

    # -- one call --------------------------------------------------------------------------

    def _call(self, runtime: TargetRuntime, started: float) -> tuple[Call, float]:
        per_attempt = self.route.per_attempt
        deadline = self.deadline if per_attempt is None else min(self.deadline, started + per_attempt)
        request = self.request
        call = Call(
            runtime.plan.model,
            request.messages,
            deadline - started,
            request.max_tokens,
            request.temperature,
            request.options,
        )
        return call, deadline

    async def call_reply(self, runtime: TargetRuntime, started: float) -> _Answer:
        call, deadline = self._call(runtime, started)
        try:
            async with self.engine.clock.timeout_at(deadline):
                reply = await runtime.provider.complete(call)
        except TimeoutError:
            raise ProviderError(
                ErrorKind.TIMEOUT,
                f"no answer within {call.timeout * 1000:.0f} ms",
                provider=runtime.plan.provider,
            ) from None
        except RouterError:
            raise
        except Exception as error:
            raise _adapter_failure(runtime, error) from error
        return _Answer(runtime, reply.text, reply.usage, reply.finish_reason, reply.tool_calls)

    async def call_buffered(self, runtime: TargetRuntime, started: float) -> _Answer:
        """A whole answer read from a stream, so the first token and the gaps can be timed."""
        if not runtime.plan.streaming:
            return await self.call_reply(runtime, started)
        opened = await self.open_stream(runtime, started)
        async for _ in self.drain(opened, record=False):
            pass
        return opened.answer()

    async def open_stream(self, runtime: TargetRuntime, started: float) -> _OpenStream:
        """Start a stream and wait for its first text (or its end), under the first-token budget."""
        call, deadline = self._call(runtime, started)
        first_token = self.route.first_token
        first_deadline = deadline if first_token is None else min(deadline, started + first_token)
        idle = self.route.idle
        clock = self.engine.clock
        chunks = runtime.provider.stream(call)
        opened = _OpenStream(runtime, chunks, started, deadline, "")
        try:
            while True:
                # Silence between events counts even before the first text (role-only deltas, pings).
                wait_until = first_deadline if idle is None else min(first_deadline, clock.monotonic() + idle)
                try:
                    async with clock.timeout_at(wait_until):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    opened.ended = True
                    break
                self._absorb(opened, chunk)
                if chunk.text:
                    opened.first = chunk.text
                    opened.received.append(chunk.text)
                    break
        except TimeoutError:
            await _close(chunks)
            waited = (clock.monotonic() - started) * 1000
            raise ProviderError(
                ErrorKind.TIMEOUT, f"no first token after {waited:.0f} ms", provider=runtime.plan.provider
            ) from None
        except RouterError:
            await _close(chunks)
            raise
        except BaseException as error:
            await _close(chunks)
            if isinstance(error, Exception):
                raise _adapter_failure(runtime, error) from error
            raise
        if opened.ended:
            self._check_end(opened)
        return opened

    def _absorb(self, opened: _OpenStream, chunk: Chunk) -> None:
        if chunk.warning:
            self.warnings.append(f"{opened.runtime.plan.name}: {chunk.warning}")
        if chunk.finish_reason:
            opened.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            opened.usage = chunk.usage
        if chunk.tool_calls:
            opened.tool_calls = chunk.tool_calls

    def _check_end(self, opened: _OpenStream) -> None:
        if opened.finish_reason is None:
            # Success is judged by a proper end: an answer without a finish reason may be cut short.
            raise _broken(opened, "the stream ended without a finish reason")
        if opened.finish_reason == "content_filter":
            raise ProviderError(
                ErrorKind.CONTENT_FILTER,
                "the answer was withheld by the provider's content filter",
                provider=opened.runtime.plan.provider,
            )

    async def drain(self, opened: _OpenStream, record: bool = True) -> AsyncGenerator[str, None]:
        """The stream's text from the first token on; a cut, a stall or a bad end raises StreamBroken."""
        clock = self.engine.clock
        idle = self.route.idle
        chunks = opened.chunks
        try:
            if opened.first and record:
                yield opened.first
            while not opened.ended:
                next_deadline = (
                    opened.deadline if idle is None else min(opened.deadline, clock.monotonic() + idle)
                )
                try:
                    async with clock.timeout_at(next_deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    opened.ended = True
                    self._check_end(opened)
                    break
                except TimeoutError:
                    why = "stalled" if next_deadline < opened.deadline else "ran past its deadline"
                    raise _broken(opened, f"the stream {why} after output began") from None
                except ProviderError as error:
                    raise _broken(
                        opened, f"the stream broke after output began: {error.kind}: {error.message}"
                    ) from None
                except Exception as error:
                    raise _broken(
                        opened, f"the stream broke after output began: {type(error).__name__}"
                    ) from error
                self._absorb(opened, chunk)
                if chunk.text:
                    opened.received.append(chunk.text)
                    if record:
                        yield chunk.text
        except StreamBroken as error:
            await _close(chunks)
            if record:
                # Handed to the caller: the attempt ends here, and so does the request.
                self._end_stream_attempt(opened, error)
                error.attempts = tuple(self.trail)
            raise
        except BaseException:
            if record:  # the caller walked away (or was cancelled): no verdict on the target
                await self._abandon(opened)
            else:
                await _close(chunks)
            raise

    async def _abandon(self, opened: _OpenStream) -> None:
        """Nobody will read this stream: give back its permits, record a cancellation, close it."""
        runtime = opened.runtime
        opened.ticket.settle(None)
        runtime.breaker.release()
        self._record(runtime, Outcome.CANCELLED, opened.started, "cancelled")
        await _close(opened.chunks)  # last: a second cancellation may cut it short

    def _end_stream_attempt(self, opened: _OpenStream, error: ProviderError | None) -> None:
        runtime = opened.runtime
        opened.ticket.settle(opened.usage)
        if error is None:
            runtime.breaker.record_success()
            now = self.engine.clock.monotonic()
            runtime.observe(now - opened.started)
            runtime.outcome(True, now)
            self._record(runtime, Outcome.OK, opened.started)
        else:
            self._failed(runtime, error, opened.started)

    def finish_stream(self, opened: _OpenStream) -> _Answer:
        self._end_stream_attempt(opened, None)
        return opened.answer()

    def completion(self, answer: _Answer) -> Completion:
        plan = answer.runtime.plan
        usage = answer.usage
        return Completion(
            text=answer.text,
            target=plan.name,
            provider=plan.provider,
            model=plan.model,
            usage=usage,
            cost_usd=plan.cost(usage.input_tokens, usage.output_tokens),
            latency_s=self.engine.clock.monotonic() - self.started,
            attempts=tuple(self.trail),
            finish_reason=answer.finish_reason,
            warnings=tuple(self.warnings),
            tool_calls=answer.tool_calls,
        )


async def _wait_out(tasks: list[asyncio.Future[Any]]) -> bool:
    """Wait until every task is done, even through a cancellation; whether one came meanwhile."""
    cancelled = False
    pending = {task for task in tasks if not task.done()}
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


def _stream_of(lane: asyncio.Future[Any]) -> _OpenStream | None:
    """The open stream a finished lane holds, if it holds one."""
    if lane.cancelled() or lane.exception() is not None:
        return None
    result = lane.result()
    return result if isinstance(result, _OpenStream) else None


def _broken(opened: _OpenStream, message: str) -> StreamBroken:
    plan = opened.runtime.plan
    return StreamBroken(message, received="".join(opened.received), provider=plan.provider, target=plan.name)


def _adapter_failure(runtime: TargetRuntime, error: Exception) -> ProviderError:
    # A provider that sends garbage must cost a failover, not the caller's request.
    logger.warning(
        "provider %s raised %s; counted as server_error", runtime.plan.provider, type(error).__name__
    )
    return ProviderError(
        ErrorKind.SERVER_ERROR,
        f"unexpected {type(error).__name__} from the adapter",
        provider=runtime.plan.provider,
    )


async def _close(chunks: AsyncIterator[Chunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream may fail again; the first error is the one to report
            logger.debug("closing a broken stream failed", exc_info=True)
