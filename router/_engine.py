"""One request: plan -> candidates -> attempts -> result (retry, failover, hedge, deadline, stream recovery).

Each request runs in a `_Run`, which walks the candidates in "lanes": one lane normally, a
second one when `hedge_after` passes without an answer. A lane tries one target at a time:
breaker gate, admission (`_admission`), the call under `min(per_attempt, deadline)`, then the
verdict of `decide` (`_decide`): retry, fail over or raise. A stream (`_stream`) that breaks
after output began is continued on a target that takes a prefill, or restarted there with a
`StreamRestart` first, as the route's `stream_recovery` says. Every step lands in the trail,
skips included.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from router._admission import Ticket, admit
from router._budgets import Budgets
from router._deadline import Deadline
from router._decide import Failover, Raise, Retry, Verdict, decide
from router._selection import Request, misfit, order_candidates, over_budget, shaped, unavailable
from router._stream import OpenStream, adapter_failure, close, continuation, open_stream, read
from router.clock import Clock
from router.errors import (
    AllTargetsFailed,
    ErrorKind,
    InvalidRequest,
    ProviderError,
    RouterError,
    StreamBroken,
)
from router.events import AttemptEvent, Event, FailoverEvent, RetryEvent
from router.policy.compile import Plan, RoutePlan, TargetPlan
from router.providers.base import Call
from router.resilience.retry_budget import RetryBudget
from router.resilience.runtime import TargetRuntime
from router.results import Attempt, Completion, Outcome, StreamRestart, ToolCall, Usage

__all__ = ["Engine"]

_T = TypeVar("_T")
_SHAPED_ROUTES = 1024  # routes as rules and controls changed them, kept per plan (see `Engine._shaped`)
_Invoke = Callable[[TargetRuntime, float], Awaitable[_T]]


@dataclass(frozen=True, slots=True)
class _Answer:
    """One target's share of an answer (the whole of it, or a part a continuation added to)."""

    runtime: TargetRuntime
    text: str
    usage: Usage
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    estimated: bool = False  # the stream broke before its usage came: `usage` is an estimate


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
        self.budgets = budgets
        self._runtimes = runtimes  # the router's: it adds the runtimes of `provider:model` addresses
        self._shaped_routes: dict[int, _Route] = {}  # by id of the plan each holds (see `_shaped`)
        budget = plan.retry_budget
        self.retry_budget = retry_budget or RetryBudget(
            ratio=budget.ratio, min_retries=budget.min_retries, window=budget.window, clock=clock
        )
        self._routes = {
            name: _Route(route, tuple(runtimes[target.name] for target in route.targets))
            for name, route in plan.routes.items()
        }

    def knows(self, route: str) -> bool:
        return route in self._routes

    def route(self, name: str) -> RoutePlan | None:
        found = self._routes.get(name)
        return None if found is None else found.plan

    def add_route(self, plan: RoutePlan, runtimes: tuple[TargetRuntime, ...]) -> None:
        self._routes[plan.name] = _Route(plan, runtimes)

    def _start(self, route_name: str, request: Request, deadline: float | None) -> _Run:
        route = self._routes.get(route_name)
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            raise InvalidRequest(f"unknown route {route_name!r}; routes: {known}")
        if route.plan.rules or request.control is not None:
            route = self._shaped(route, request)
        self.retry_budget.on_request()
        return _Run(self, route, request, deadline)

    def _shaped(self, route: _Route, request: Request) -> _Route:
        """The route as the request's metadata (rules) and control change it; a rule's route, or a
        repeated control's, is made once."""
        plan = shaped(route.plan, request, self._target_plan)
        if plan is route.plan:
            return route
        made = self._shaped_routes.get(id(plan))
        if made is not None and made.plan is plan:  # it holds `plan`: the id is no other plan's
            return made
        same = plan.targets is route.plan.targets
        made = _Route(plan, route.runtimes if same else tuple(self._runtimes[t.name] for t in plan.targets))
        if len(self._shaped_routes) >= _SHAPED_ROUTES:
            self._shaped_routes.clear()
        self._shaped_routes[id(plan)] = made
        return made

    def _target_plan(self, name: str) -> TargetPlan:
        return self._runtimes[name].plan

    async def complete(self, route: str, request: Request, deadline: float | None = None) -> Completion:
        run = self._start(route, request, deadline)
        # A broken stream always restarts here: nothing of it reached the caller.
        answer = await run.first(run.call_buffered if run.route.stream_upstream else run.call_reply)
        return run.completion([answer])

    async def stream(
        self, route: str, request: Request, deadline: float | None = None
    ) -> AsyncGenerator[str | StreamRestart | Completion, None]:
        run = self._start(route, request, deadline)
        async with aclosing(run.stream()) as items:
            async for item in items:
                yield item


class _Run:
    """The state of one request: its deadline, its trail, and whose turn has come among the candidates."""

    __slots__ = (
        "calls",
        "candidates",
        "deadline",
        "engine",
        "min_window",
        "refused_prefill",
        "request",
        "route",
        "runtimes",
        "spent",
        "started",
        "trail",
        "warnings",
    )

    def __init__(self, engine: Engine, route: _Route, request: Request, deadline: float | None) -> None:
        self.engine = engine
        self.route = route.plan
        self.runtimes = route.runtimes
        self.request = request
        self.started = engine.clock.monotonic()
        total = route.plan.total if deadline is None else min(route.plan.total, deadline)
        self.deadline = self.started + total
        self.trail: list[Attempt] = []
        self.warnings: list[str] = []
        self.candidates: list[TargetRuntime] = []
        self.spent: set[TargetRuntime] = set()  # whose turn has come
        self.calls: dict[TargetRuntime, int] = {}
        self.refused_prefill: set[TargetRuntime] = set()
        # After a context_length error: the largest window known to be too small.
        self.min_window: int | None = None

    # -- the walk over candidates ----------------------------------------------------------

    async def first(self, invoke: _Invoke[_T]) -> _T:
        """The first value a candidate produces, trying them in order (and hedging, if asked)."""
        self._consider()
        result = await self._walk(self._turns(), invoke)
        if result is None:
            reason = ""
            if not self.candidates:
                reason = "no target fits the request"
            elif self.engine.clock.monotonic() >= self.deadline:
                reason = "deadline exceeded"
            raise AllTargetsFailed(self.route.name, self.trail, reason)
        return result

    def _consider(self) -> None:
        """The candidates in the strategy's order; those that cannot take the request go in the trail."""
        runtimes, request = self.runtimes, self.request
        self.candidates = order_candidates(self.route, runtimes, request, self.engine.rng, self.started)
        if len(self.candidates) < len(runtimes):
            for runtime in runtimes:
                why = misfit(runtime.plan, request)
                if why is not None:
                    self._skip(runtime, *why)

    def _turns(self, wanted: Callable[[TargetRuntime], bool] | None = None) -> Iterator[TargetRuntime]:
        """The candidates whose turn has not come (and that are `wanted`), each taken as a lane asks."""
        for runtime in self.candidates:
            if runtime not in self.spent and (wanted is None or wanted(runtime)):
                self.spent.add(runtime)
                yield runtime

    def _takes_prefill(self, runtime: TargetRuntime) -> bool:
        return runtime.plan.prefill and runtime not in self.refused_prefill

    async def _walk(
        self, pending: Iterator[TargetRuntime], invoke: _Invoke[_T], *, prefilled: bool = False
    ) -> _T | None:
        if self.route.hedge_after is None:
            return await self._lane(pending, invoke, prefilled)
        return await self._race(pending, invoke, self.route.hedge_after, prefilled)

    async def _race(
        self, pending: Iterator[TargetRuntime], invoke: _Invoke[_T], after: float, prefilled: bool
    ) -> _T | None:
        clock = self.engine.clock
        lanes = {asyncio.ensure_future(self._lane(pending, invoke, prefilled))}
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
                    lanes.add(asyncio.ensure_future(self._lane(pending, invoke, prefilled)))
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
        if cancelled and isinstance(won, OpenStream):
            unread.append(won)
        for opened in unread:
            await self._abandon(opened)
        if cancelled:
            raise asyncio.CancelledError

    async def _lane(
        self, pending: Iterator[TargetRuntime], invoke: _Invoke[_T], prefilled: bool
    ) -> _T | None:
        for runtime in pending:
            why = self._passed_over(runtime)
            if why is not None:
                self._skip(runtime, *why)
                continue
            result = await self._try_target(runtime, invoke, prefilled)
            if result is not None:
                return result
            if self.engine.clock.monotonic() >= self.deadline:
                return None
        return None

    def _passed_over(self, runtime: TargetRuntime) -> tuple[Outcome, str | None] | None:
        """Why the candidate is skipped before its breaker is asked (an outcome and a detail), or None."""
        window = runtime.plan.context_window
        if self.min_window is not None and window is not None and window <= self.min_window:
            return Outcome.WINDOW_TOO_SMALL, f"window {window}, not larger than one the prompt did not fit"
        cost = over_budget(self.route, runtime, self.request)
        if cost is not None:
            return Outcome.OVER_BUDGET, cost
        why = unavailable(runtime, self.route, self.engine.clock.monotonic())
        return None if why is None else (why, None)

    # -- one target: calls until it answers, or the verdict moves on -------------------------

    async def _try_target(self, runtime: TargetRuntime, invoke: _Invoke[_T], prefilled: bool) -> _T | None:
        """The target's answer, or None to move on; raises what the verdict says to raise."""
        clock = self.engine.clock
        while True:
            ticket = await self._gate(runtime)
            if ticket is None:
                return None
            started = clock.monotonic()
            self.calls[runtime] = self.calls.get(runtime, 0) + 1
            try:
                value = await invoke(runtime, started)
            except ProviderError as error:
                ticket.settle(None)
                error.target = error.target or runtime.plan.name
                self._failed(runtime, error, started)
                verdict = self._verdict(runtime, error, prefilled=prefilled)
                if isinstance(verdict, Raise):
                    error.attempts = tuple(self.trail)
                    raise
                await self._carry_out(runtime, error, verdict)
                if isinstance(verdict, Retry):
                    continue
                return None
            except BaseException:
                ticket.settle(None)
                runtime.breaker.release()
                self._record(runtime, Outcome.CANCELLED, started, "cancelled")
                self.spent.discard(runtime)  # a hedge that lost did not fail: a recovery may use it
                raise
            if isinstance(value, OpenStream):
                value.ticket = ticket
                return value  # its outcome is recorded when the caller has read it to the end
            assert isinstance(value, _Answer)
            ticket.settle(value.usage)
            self._succeeded(runtime, started)
            return value

    async def _gate(self, runtime: TargetRuntime) -> Ticket | None:
        """The breaker's permit, time left, and admission for one call; None (recorded) when one says no."""
        breaker = runtime.breaker
        if not breaker.admit():
            self._skip(runtime, Outcome.BREAKER_OPEN)
            return None
        if self.engine.clock.monotonic() >= self.deadline:
            breaker.release()
            self._skip(runtime, Outcome.DEADLINE)
            return None
        started = self.engine.clock.monotonic()
        try:
            ticket = await admit(runtime, self.route, self.request, self.deadline, self.engine.budgets)
        except BaseException as error:
            breaker.release()  # maybe the one half-open probe
            if isinstance(error, asyncio.CancelledError):
                self._record(runtime, Outcome.CANCELLED, started, "cancelled")
            raise
        if isinstance(ticket, Outcome):
            breaker.release()
            spent = ticket is Outcome.OVER_BUDGET
            self._skip(runtime, ticket, "a budget covering it is spent" if spent else None)
            return None
        return ticket

    def _verdict(
        self, runtime: TargetRuntime, error: ProviderError, *, surfaced: bool = False, prefilled: bool = False
    ) -> Verdict:
        """`decide` on this request's facts; the retry budget is asked only when a retry is the verdict."""
        verdict = partial(
            decide,
            error,
            self.route,
            calls=self.calls.get(runtime, 1),
            time_left=self.deadline - self.engine.clock.monotonic(),
            rand=self.engine.rng.random,
            surfaced=surfaced,
            prefilled=prefilled,
            window=runtime.plan.context_window,
        )
        decided = verdict()
        if isinstance(decided, Retry) and not self.engine.retry_budget.try_retry():
            self.warnings.append("retry budget spent: moved on without retrying")
            decided = verdict(may_retry=False)
        return decided

    async def _carry_out(
        self, runtime: TargetRuntime, error: ProviderError, verdict: Retry | Failover
    ) -> None:
        """Wait before a retry, or note what a failover teaches about the candidates left."""
        emit, route, target = self.engine.emit, self.route.name, runtime.plan.name
        if isinstance(verdict, Retry):
            if emit is not None:
                emit(RetryEvent(route, target, error.kind, verdict.delay))
            await self.engine.clock.sleep(verdict.delay)
            return
        if verdict.window_at_most is not None:
            self.min_window = max(self.min_window or 0, verdict.window_at_most)
        if verdict.refused_prefill:
            self.refused_prefill.add(runtime)
            self.spent.discard(runtime)  # it may still start the answer over, without a prefill
        if emit is not None:
            emit(FailoverEvent(route, target, error.kind))

    def _final(self, error: ProviderError) -> ProviderError:
        error.attempts = tuple(self.trail)
        return error

    # -- a stream, recovered after a break -------------------------------------------------

    async def stream(self) -> AsyncGenerator[str | StreamRestart | Completion, None]:
        """The answer's text as it arrives, carried on past a break as the route says, then the Completion."""
        recovery = self.route.stream_recovery or "continue"
        opened = await self.first(self.open_stream)
        pieces = [opened]  # the answer's parts: a continuation adds one, a restart starts over
        while True:
            try:
                # The stream's text for the caller, its attempt recorded however it ends (read here,
                # not through a generator of its own: one step less per chunk).
                try:
                    async with aclosing(read(opened)) as texts:
                        async for text in texts:
                            if text:
                                yield text
                except ProviderError as error:  # broken, or withheld by a content filter at the end
                    self._end_stream(opened, error)
                    error.attempts = tuple(self.trail)
                    raise
                except BaseException:  # the caller walked away (or was cancelled): no verdict on the target
                    await self._abandon(opened)
                    raise
                self._end_stream(opened, None)
                break
            except StreamBroken as error:
                broken = error
            shown = "".join(piece.text for piece in pieces)
            opened, continues = await self._take_over(pieces[-1], broken, shown, recovery)
            if continues:
                pieces.append(opened)
            else:
                yield StreamRestart(broken.target, shown, opened.runtime.plan.name, broken.message)
                pieces = [opened]
        yield self.completion([_piece(piece, broken=piece is not pieces[-1]) for piece in pieces])

    async def _take_over(
        self, broken: OpenStream, error: StreamBroken, shown: str, recovery: str
    ) -> tuple[OpenStream, bool]:
        """The stream that goes on after `broken` broke with `shown` delivered, and whether it continues
        the text (True) or starts the answer over (False); raises `error` when nobody can."""
        runtime = broken.runtime
        error.received = shown
        verdict = self._verdict(runtime, error, surfaced=recovery == "raise")
        if isinstance(verdict, Raise):
            raise self._final(error)
        await self._carry_out(runtime, error, verdict)
        if isinstance(verdict, Retry):
            self.spent.discard(runtime)  # its turn comes again
        if recovery == "continue" and shown:
            ask = partial(self.open_stream, request=continuation(self.request, shown))
            opened = await self._walk(self._turns(self._takes_prefill), ask, prefilled=True)
            if opened is not None:
                _drop_repeated_space(opened, shown)
                return opened, True
        opened = await self._walk(self._turns(), self.open_stream)
        if opened is None:
            raise self._final(error)
        return opened, False

    async def _abandon(self, opened: OpenStream) -> None:
        """Nobody will read this stream: give back its permits, record a cancellation, close it."""
        runtime = opened.runtime
        opened.ticket.settle(None)
        runtime.breaker.release()
        self._record(runtime, Outcome.CANCELLED, opened.started, "cancelled")
        self.spent.discard(runtime)  # as a lost hedge: not a failure
        await close(opened.chunks)  # last: a second cancellation may cut it short

    def _end_stream(self, opened: OpenStream, error: ProviderError | None) -> None:
        opened.ticket.settle(opened.spent())
        if error is None:
            self._succeeded(opened.runtime, opened.started)
        else:
            error.target = error.target or opened.runtime.plan.name
            self._failed(opened.runtime, error, opened.started)

    # -- the calls -------------------------------------------------------------------------

    def _call(self, runtime: TargetRuntime, started: float, request: Request) -> tuple[Call, float]:
        per_attempt = self.route.per_attempt
        deadline = self.deadline if per_attempt is None else min(self.deadline, started + per_attempt)
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
        call, deadline = self._call(runtime, started, self.request)
        timer = Deadline(self.engine.clock, deadline)
        try:
            reply = await timer.wait(runtime.provider.complete(call))
        except TimeoutError:
            raise ProviderError(
                ErrorKind.TIMEOUT,
                f"no answer within {call.timeout * 1000:.0f} ms",
                provider=runtime.plan.provider,
            ) from None
        except RouterError:
            raise
        except Exception as error:
            raise adapter_failure(runtime, error) from error
        finally:
            timer.stop()
        if reply.finish_reason is None:
            # As for a stream: an answer that does not say how it ended may be cut short.
            raise ProviderError(
                ErrorKind.SERVER_ERROR,
                "the answer came without a finish reason",
                provider=runtime.plan.provider,
            )
        return _Answer(runtime, reply.text, reply.usage, reply.finish_reason, reply.tool_calls)

    async def call_buffered(self, runtime: TargetRuntime, started: float) -> _Answer:
        """A whole answer read from a stream, so the first token and the gaps can be timed."""
        if not runtime.plan.streaming:
            return await self.call_reply(runtime, started)
        opened = await self.open_stream(runtime, started)
        try:
            async for _ in read(opened):
                pass
        except StreamBroken:
            raise  # closed by `read`
        except BaseException:
            await close(opened.chunks)
            raise
        return _piece(opened)

    async def open_stream(
        self, runtime: TargetRuntime, started: float, request: Request | None = None
    ) -> OpenStream:
        """Start a stream (of `request`, default the run's) and wait for its first text or its end."""
        request = request or self.request
        call, deadline = self._call(runtime, started, request)
        first_token = self.route.first_token
        return await open_stream(
            runtime,
            call,
            started=started,
            deadline=deadline,
            first_deadline=deadline if first_token is None else min(deadline, started + first_token),
            idle=self.route.idle,
            clock=self.engine.clock,
            input_tokens=request.input_tokens,
            warnings=self.warnings,
        )

    # -- the trail and the result ----------------------------------------------------------

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

    def _skip(self, runtime: TargetRuntime, outcome: Outcome, detail: str | None = None) -> None:
        self._record(runtime, outcome, self.engine.clock.monotonic(), detail)

    def _failed(self, runtime: TargetRuntime, error: ProviderError, started: float) -> None:
        if error.kind.counts_against_breaker:
            runtime.breaker.record_failure(error)
            runtime.outcome(False, self.engine.clock.monotonic())
        else:
            runtime.breaker.release()
        self._record(runtime, error.kind, started, error.message, error.status)

    def _succeeded(self, runtime: TargetRuntime, started: float) -> None:
        runtime.breaker.record_success()
        now = self.engine.clock.monotonic()
        runtime.observe(now - started)
        runtime.outcome(True, now)
        self._record(runtime, Outcome.OK, started)

    def completion(self, answers: Sequence[_Answer]) -> Completion:
        """The Completion of an answer in one or more parts: the last part's target answered it,
        and the usage and cost are every part's."""
        last = answers[-1]
        plan = last.runtime.plan
        if len(answers) == 1:  # most answers: one part, nothing to add up
            usage, text = last.usage, last.text
            cost = plan.cost(usage.input_tokens, usage.output_tokens)
        else:
            tokens_in = sum(a.usage.input_tokens for a in answers)
            usage = Usage(tokens_in, sum(a.usage.output_tokens for a in answers))
            text = "".join(answer.text for answer in answers)
            cost = sum(a.runtime.plan.cost(a.usage.input_tokens, a.usage.output_tokens) for a in answers)
        for answer in answers:
            if answer.estimated:
                self.warnings.append(f"{answer.runtime.plan.name}: the broken stream's usage is estimated")
        return Completion(
            text=text,
            target=plan.name,
            provider=plan.provider,
            model=plan.model,
            usage=usage,
            cost_usd=cost,
            latency_s=self.engine.clock.monotonic() - self.started,
            attempts=tuple(self.trail),
            finish_reason=last.finish_reason,
            warnings=tuple(self.warnings),
            tool_calls=last.tool_calls,
        )


def _drop_repeated_space(opened: OpenStream, shown: str) -> None:
    """Some wires send a prefill without its trailing whitespace (Anthropic's API refuses it), so the
    model writes it again: the caller has it already."""
    tail = shown[len(shown.rstrip()) :]
    if tail and opened.received and opened.received[0].startswith(tail):
        opened.received[0] = opened.received[0][len(tail) :]


def _piece(opened: OpenStream, *, broken: bool = False) -> _Answer:
    """What a stream contributed to the answer; a broken one's usage is the provider's or an estimate."""
    usage = opened.spent() if broken else opened.usage
    estimated = broken and opened.usage is None and usage is not None
    return _Answer(
        opened.runtime, opened.text, usage or Usage(), opened.finish_reason, opened.tool_calls, estimated
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


def _stream_of(lane: asyncio.Future[Any]) -> OpenStream | None:
    """The open stream a finished lane holds, if it holds one."""
    if lane.cancelled() or lane.exception() is not None:
        return None
    result = lane.result()
    return result if isinstance(result, OpenStream) else None
