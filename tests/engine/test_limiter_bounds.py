"""A limiter wait takes at most half the time left, whatever it waits on: the next target can still answer."""

from __future__ import annotations

import asyncio

import pytest

from router.policy.model import LimitsSpec
from router.resilience.limiter import Limiter
from router.results import Outcome
from router.testing import FakeClock

from .conftest import USER

TOKENS = 100


class SlowBuckets:
    """Fleet buckets (`ClusterBuckets`) that never cover a call at once and take `delay` to
    answer: the limiter's bound must hold whatever its cluster does (`SharedBuckets` only waits
    for its leases' refills, see tests/fleet/test_leases.py)."""

    def __init__(self, clock: FakeClock, delay: float, wait: float = 0.0) -> None:
        self.clock = clock
        self.delay = delay
        self.wait = wait
        self.outstanding = 0  # tokens taken and not given back
        self.requests = 0  # requests taken and not given back

    def take(self, tokens: int) -> bool:
        return False

    async def reserve(self, tokens: int, max_wait: float) -> float | None:
        await self.clock.sleep(self.delay)
        self.outstanding += tokens
        self.requests += 1
        return self.wait

    def reconcile(self, delta: int) -> None:
        self.outstanding += delta

    def refund(self, tokens: int) -> None:
        self.requests -= 1
        self.reconcile(-tokens)


def outcomes(result) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


def with_buckets(r, clock: FakeClock, buckets: SlowBuckets, **limits: int) -> Limiter:
    limiter = Limiter(LimitsSpec(**limits), clock, buckets)
    r.router._runtimes["a"].limiter = limiter
    return limiter


async def test_a_hung_bucket_store_costs_half_the_time_left_and_the_next_target_answers(rig, clock):
    r = rig({"latency_budget": {"total": "1s"}})
    buckets = SlowBuckets(clock, delay=1.0)  # 2 x a 500 ms socket timeout
    limiter = with_buckets(r, clock, buckets, tpm=6000)
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", Outcome.LIMITED), ("b", "ok")]
    assert clock.monotonic() - start == pytest.approx(0.5)
    assert limiter.in_flight == 0 and limiter._tpm is not None and limiter._tpm.level() == 6000


async def test_a_bucket_wait_that_no_longer_fits_after_the_reserve_gives_everything_back(rig, clock):
    r = rig({"latency_budget": {"total": "1s"}})
    # The store answers at 0.3 s with a wait of 0.3 s: the call could not start before 0.6 s.
    buckets = SlowBuckets(clock, delay=0.3, wait=0.3)
    limiter = with_buckets(r, clock, buckets, rpm=1000)
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", Outcome.LIMITED), ("b", "ok")]
    assert clock.monotonic() - start == pytest.approx(0.3)
    assert limiter.in_flight == 0 and buckets.outstanding == buckets.requests == 0


async def test_a_bucket_wait_that_fits_is_taken(rig, clock):
    r = rig({"latency_budget": {"total": "1s"}})
    buckets = SlowBuckets(clock, delay=0.1, wait=0.2)
    with_buckets(r, clock, buckets, tpm=6000)
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", "ok")]
    assert clock.monotonic() - start == pytest.approx(0.3)


async def test_a_saturated_rpm_bucket_waits_half_the_time_left_then_the_next_target_answers(rig, clock):
    r = rig(limits={"rpm": 4})  # the default deadline: 60 s
    for _ in range(4):  # the burst: a's bucket is full
        assert (await r.router.complete("chat", USER)).target == "a"
    # aiolimiter leaks on the loop's clock, which the fake clock does not move: a's bucket stays
    # full however long the wait, as under a burst of waiters. The turn estimate (15 s) fits.
    start = clock.monotonic()
    result = await r.router.complete("chat", USER)
    assert outcomes(result) == [("a", Outcome.LIMITED), ("b", "ok")]
    assert clock.monotonic() - start == pytest.approx(30.0)
    assert r.router._runtimes["a"].limiter.in_flight == 0


@pytest.mark.parametrize("delay", [0.0, 0.2])
async def test_a_cancelled_acquire_gives_back_the_slot_and_all_tokens(delay):
    clock = FakeClock(auto_advance=False)
    buckets = SlowBuckets(clock, delay=0.2, wait=0.3)
    limiter = Limiter(LimitsSpec(tpm=6000, max_concurrency=1), clock, buckets)
    task = asyncio.ensure_future(limiter.acquire(TOKENS, clock.monotonic() + 10.0))
    await asyncio.sleep(0)
    clock.advance(delay)  # 0: in the fleet's reserve; 0.2: waiting out the fleet's wait
    await asyncio.sleep(0)
    assert limiter.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.in_flight == 0 and buckets.outstanding == buckets.requests == 0
    assert limiter._tpm is not None and limiter._tpm.level() == 6000
