"""A request cancelled at any await point gives back every permit it held.

Each sweep cancels one request after k event-loop steps, for k = 0, 1, 2, ... until the
request finishes before the cancel, on a fresh router each time (the fake clock jumps to
the next timer whenever the tasks have settled, so every await point is reached). After
each one: no limiter slot taken, no tokens or dollars kept for a call that never went out,
every breaker admits (no half-open probe left hanging), every pool key serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from router import ErrorKind, MemoryStore, Router
from router._budgets import Budgets
from router._quota import Quotas
from router._selection import estimate_tokens
from router.policy.model import LimitsSpec
from router.providers.pool import KeyPool
from router.resilience.limiter import Limiter
from router.results import Completion
from router.state import Grant
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

from .conftest import USER, build_policy
from .test_limiter_bounds import SlowBuckets

TPM = 6000
LIMITS = {"rpm": 600, "tpm": TPM, "max_concurrency": 2}
MAX_TOKENS = 500
TARGETS = {
    "a": {"provider": "p1", "model": "a", "price": {"input": 1.0, "output": 2.0}, "tier": "premium"},
    "b": {"provider": "p2", "model": "b", "price": {"input": 0.5, "output": 1.0}, "tier": "economy"},
}
# A day's refill over the test's few virtual seconds is far below one call's estimate ($0.001),
# so a reservation that is not given back shows.
BUDGETS = {
    "premium": {"tier": "premium", "usd": 1.0, "per": "day"},
    "economy": {"tier": "economy", "usd": 1.0, "per": "day"},
}
BUDGET_OF = {"a": "premium", "b": "economy"}
BREAKER = {"fail_max": 1, "reset_timeout": "10s"}
MAX_STEPS = 5000


@dataclass
class Case:
    """One router, one scripted request; `check` says what must be back after it."""

    clock: FakeClock
    router: Router
    members: dict[str, list[ScriptedProvider]]
    buckets: SlowBuckets | None = None
    pool: KeyPool | None = None
    spent: dict[str, float] = field(default_factory=lambda: {"a": 0.0, "b": 0.0})  # by the answers
    sent: dict[str, int] = field(default_factory=dict)
    shared: int = 0  # the fleet's tokens outstanding before the request

    def calls(self, target: str) -> int:
        return sum(member.count(target) for member in self.members[target])

    def answered(self, result: Completion) -> None:
        self.spent[result.target] += result.cost_usd

    def mark(self) -> None:
        self.sent = {target: self.calls(target) for target in self.members}
        self.shared = self.buckets.outstanding if self.buckets is not None else 0

    async def check(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)  # lease refills run in the background
        tokens = estimate_tokens(USER) + MAX_TOKENS
        for name, runtime in self.router._runtimes.items():
            assert runtime.in_flight == 0, name
            limiter = runtime.limiter
            assert limiter is not None and limiter.in_flight == 0, name
            # A call that went out keeps its estimate (the provider counted it); one that did not, nothing.
            sent = self.calls(name) - self.sent[name]
            assert limiter._tpm is not None and limiter._tpm.level() >= TPM - tokens * sent, name
            if name == "a" and self.buckets is not None:
                assert 0 <= self.buckets.outstanding - self.shared <= tokens * sent
            assert runtime.breaker.admit(), f"{name}: the breaker's probe permit was never given back"
            runtime.breaker.release()
            # Everything but what the answers cost is there: in the fleet's bucket or this worker's lease.
            budget = next(b for b in self.router.plan.routes["chat"].budgets if b.name == BUDGET_OF[name])
            held = self.router._budgets.lease(budget).held
            bucket = await self.router.store.lease(f"budget:{budget.name}", 0, 1.0, 1.0 / 86400, "")
            assert bucket.level + held >= 1.0 - self.spent[name] - 1e-9, name
        if self.pool is not None:
            assert set(self.pool.key_states.values()) == {"serving"}


def make_case(
    route: dict[str, Any] | None = None,
    *,
    a: tuple[Step, ...] = (),
    b: tuple[Step, ...] = (),
    cluster: bool = False,
    keys: int = 1,
    targets: dict[str, Any] = TARGETS,
    breaker: dict[str, Any] = BREAKER,
) -> Case:
    clock = FakeClock()
    p1_members = [ScriptedProvider(f"p1-{i}", clock=clock) for i in range(keys)]
    for member in p1_members:
        member.script("a", *a)
    p1: Any = p1_members[0]
    pool = None
    if keys > 1:
        pool = p1 = KeyPool("p1", [(f"key-{i}", m) for i, m in enumerate(p1_members)], clock, max_rest=20.0)
    p2 = ScriptedProvider("p2", clock=clock)
    p2.script("b", *b)
    policy = build_policy(route, targets=targets, breaker=breaker, limits=LIMITS, budgets=BUDGETS)
    router = Router(policy, clock=clock, providers={"p1": p1, "p2": p2}, seed=7)
    case = Case(clock, router, {"a": p1_members, "b": [p2]}, pool=pool)
    if cluster:
        case.buckets = SlowBuckets(clock, delay=0.05)
        router._runtimes["a"].limiter = Limiter(LimitsSpec(**LIMITS), clock, case.buckets)
    return case


async def half_open(case: Case) -> None:
    """Trip a's breaker with one failure (scripted first), then wait out its reset timeout."""
    result = await case.router.complete("chat", USER, max_tokens=MAX_TOKENS)
    assert result.target == "b"
    case.answered(result)
    case.clock.advance(12.0)
    breaker = case.router._runtimes["a"].breaker
    assert breaker.state == "open" and breaker.retry_at <= case.clock.monotonic()  # the next call probes


async def complete(case: Case) -> None:
    case.answered(await case.router.complete("chat", USER, max_tokens=MAX_TOKENS))


async def stream(case: Case) -> None:
    async for item in case.router.stream("chat", USER, max_tokens=MAX_TOKENS):
        if isinstance(item, Completion):
            case.answered(item)


async def sweep(
    build: Callable[[], Case],
    request: Callable[[Case], Awaitable[None]],
    prepare: Callable[[Case], Awaitable[None]] | None = None,
) -> int:
    """Cancel the request after k steps for every k until it finishes first; the steps it took."""
    for steps in range(MAX_STEPS):
        case = build()
        if prepare is not None:
            await prepare(case)
        case.mark()
        task = asyncio.ensure_future(request(case))
        for _ in range(steps):
            await asyncio.sleep(0)
        finished = task.done()
        task.cancel()
        if finished:
            await task
        else:
            with pytest.raises(asyncio.CancelledError):
                await task
        await case.check()
        await case.router.aclose()
        if finished:
            return steps
    raise AssertionError(f"the request did not finish within {MAX_STEPS} steps")


SLOW = Step.reply("one two three", delay=0.5, chunk_delay=0.5)
TRIP = Step.fail(ErrorKind.SERVER_ERROR, status=503)


async def test_complete_with_limits_budgets_and_the_fleet_s_buckets():
    assert await sweep(lambda: make_case(a=(SLOW,), cluster=True), complete) > 50


async def test_complete_as_the_half_open_probe():
    assert await sweep(lambda: make_case(a=(TRIP, SLOW), cluster=True), complete, half_open) > 50


async def test_stream_with_limits_budgets_and_the_fleet_s_buckets():
    assert await sweep(lambda: make_case(a=(SLOW,), cluster=True), stream) > 50


async def test_stream_as_the_half_open_probe():
    assert await sweep(lambda: make_case(a=(TRIP, SLOW), cluster=True), stream, half_open) > 50


# The hedge starts b at 0.25 s: both first tokens come at 0.5 s, in one turn of the loop.
HEDGE = {"hedge_after": "250ms"}
HEDGED_A = Step.reply("from a", delay=0.5, chunk_delay=0.5)
HEDGED_B = Step.reply("from b", delay=0.25, chunk_delay=0.5)


async def test_hedged_stream_whose_lanes_start_in_the_same_turn():
    assert await sweep(lambda: make_case(HEDGE, a=(HEDGED_A,), b=(HEDGED_B,)), stream) > 50


async def test_hedged_buffered_stream():
    route = HEDGE | {"stream_recovery": "restart"}
    assert await sweep(lambda: make_case(route, a=(HEDGED_A,), b=(HEDGED_B,)), stream) > 50


# a breaks after its first word; b takes over (a continuation where b takes a prefill, else a restart).
# One break must not open a's breaker: an open one would not admit the check's call.
BREAKS = Step.reply("one two three", delay=0.5, chunk_delay=0.5, cut_after=2)
GOES_ON = Step.reply(" two three", delay=0.5, chunk_delay=0.5)
PREFILL_B = {**TARGETS, "b": {**TARGETS["b"], "capabilities": {"prefill": True}}}
PATIENT = {"fail_max": 5}


async def test_stream_restarted_after_a_break():
    assert await sweep(lambda: make_case(a=(BREAKS,), b=(GOES_ON,), breaker=PATIENT), stream) > 50


async def test_stream_continued_after_a_break():
    build = partial(make_case, a=(BREAKS,), b=(GOES_ON,), targets=PREFILL_B, breaker=PATIENT)
    assert await sweep(build, stream) > 50


async def test_stream_through_a_key_pool():
    assert await sweep(lambda: make_case(a=(SLOW,), keys=2), stream) > 50


async def test_hedged_stream_closes_the_lane_that_lost_in_the_same_turn():
    case = make_case(HEDGE, a=(HEDGED_A,), b=(HEDGED_B,))
    case.mark()
    final = None
    async for item in case.router.stream("chat", USER, max_tokens=MAX_TOKENS):
        if isinstance(item, Completion):
            final = item
    assert final is not None
    case.answered(final)
    loser = "b" if final.target == "a" else "a"
    assert sorted((x.target, x.outcome) for x in final.attempts) == sorted(
        [(final.target, "ok"), (loser, "cancelled")]
    )
    await case.check()


async def test_a_call_counts_among_its_runtime_s_calls_in_flight_until_it_ends(rig):
    r = rig()  # no limits, no budgets: the cheap path counts too
    r.script("a", Step.reply("slow", delay=1.0), Step.reply("one two", chunk_delay=1.0))
    runtime = r.router._runtimes["a"]
    task = asyncio.ensure_future(r.router.complete("chat", USER))
    for _ in range(5):
        await asyncio.sleep(0)
    assert runtime.in_flight == 1
    await task
    assert runtime.in_flight == 0
    stream = r.router.stream("chat", USER)
    assert await anext(stream) == "one"
    assert runtime.in_flight == 1
    rest = [item async for item in stream]
    assert rest[0] == " two" and isinstance(rest[-1], Completion)
    assert runtime.in_flight == 0


class SlowStore(MemoryStore):
    """A store whose every lease takes a moment, as over a network."""

    async def lease(self, *args: Any, **kwargs: Any) -> Grant:
        await self._clock.sleep(0.01)
        return await super().lease(*args, **kwargs)


async def test_budgets_never_suspend_so_no_cancellation_finds_one_half_way():
    """A reservation over two budgets is taken from the leases in memory: there is no await at
    which a cancellation could leave one budget taken and the other not. A spent one gives back
    what the others took."""
    clock = FakeClock(auto_advance=False)
    store = SlowStore(clock)
    budgets = {"premium": BUDGETS["premium"], "chat": {"route": "chat", "usd": 1.0, "per": "day"}}
    router = Router(
        build_policy(targets=TARGETS, budgets=budgets),
        clock=clock,
        providers={"p1": ScriptedProvider("p1", clock=clock), "p2": ScriptedProvider("p2", clock=clock)},
        store=store,
    )
    plan = router.plan
    ledger = Budgets(Quotas(store, "w", clock=clock))
    reserve = ledger.reserve(plan.routes["chat"], plan.targets["a"], 0.05)
    with pytest.raises(StopIteration) as done:
        reserve.send(None)  # done at the first step: nothing to cancel
    assert done.value.value is not None
    premium, chat = (ledger.lease(b) for b in plan.routes["chat"].budgets)
    assert premium.held == chat.held == -0.05  # ahead of the first grant, which is on its way
    chat.held = -1.0  # as if the chat budget were spent: the premium one gets its 0.05 back
    assert await ledger.reserve(plan.routes["chat"], plan.targets["a"], 0.05) is None
    assert premium.held == -0.05
    await router.aclose()
