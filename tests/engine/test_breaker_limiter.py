"""Breakers and limiters as the engine uses them."""

from __future__ import annotations

import asyncio

import pytest

from router import AllTargetsFailed, ErrorKind, ProviderError
from router.resilience.breaker import BreakerState
from router.results import Outcome
from router.testing.scripted import Step

from .conftest import USER

BREAKER = {"fail_max": 2, "reset_timeout": "10s", "max_reset_timeout": "60s"}


def outcomes(result) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


async def test_an_open_breaker_skips_the_target_without_a_call(rig):
    r = rig({"retry": {"attempts": 1}}, breaker=BREAKER)
    r.script("a", Step.fail(ErrorKind.SERVER_ERROR), Step.fail(ErrorKind.SERVER_ERROR))
    await r.router.complete("chat", USER)
    await r.router.complete("chat", USER)
    third = await r.router.complete("chat", USER)
    assert outcomes(third) == [("a", Outcome.BREAKER_OPEN), ("b", "ok")]
    assert r.p1.count("a") == 2
    assert [(t.target, t.old, t.new) for t in r.transitions] == [
        ("a", BreakerState.CLOSED, BreakerState.OPEN)
    ]


async def test_half_open_admits_one_probe_and_closes_on_success(rig, clock):
    r = rig({"retry": {"attempts": 1}}, breaker=BREAKER)
    r.script(
        "a",
        Step.fail(ErrorKind.SERVER_ERROR),
        Step.fail(ErrorKind.SERVER_ERROR),
        Step.reply("probe", delay=1.0),
    )
    await r.router.complete("chat", USER)
    await r.router.complete("chat", USER)
    clock.advance(12.0)  # past the reset timeout, even with jitter
    probe = asyncio.ensure_future(r.router.complete("chat", USER))
    await asyncio.sleep(0)
    # While the probe is out, everyone else skips the target.
    other = await r.router.complete("chat", USER)
    assert outcomes(other) == [("a", Outcome.BREAKER_OPEN), ("b", "ok")]
    assert (await probe).text == "probe"
    assert [t.new for t in r.transitions] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert (await r.router.complete("chat", USER)).target == "a"


async def test_a_failed_probe_reopens_with_a_longer_timeout(rig, clock):
    r = rig({"retry": {"attempts": 1}}, breaker=BREAKER)
    r.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 3)
    await r.router.complete("chat", USER)
    await r.router.complete("chat", USER)
    first_open = r.transitions[-1]
    clock.advance(12.0)
    await r.router.complete("chat", USER)  # the probe fails
    reopened = r.transitions[-1]
    assert [t.new for t in r.transitions] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]
    first_wait = first_open.retry_at - first_open.at
    second_wait = reopened.retry_at - reopened.at
    assert 8.0 <= first_wait <= 10.0  # 10 s, jittered down by up to 20 %
    assert 16.0 <= second_wait <= 20.0  # doubled


async def test_caller_errors_and_cancellations_do_not_move_the_breaker(rig, clock):
    r = rig({"retry": {"attempts": 1}}, breaker={"fail_max": 1})
    r.script("a", Step.fail(ErrorKind.BAD_REQUEST), Step.hang())
    with pytest.raises(ProviderError):
        await r.router.complete("chat", USER)
    task = asyncio.ensure_future(r.router.complete("chat", USER))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert r.transitions == []
    assert (await r.router.complete("chat", USER)).target == "a"


async def test_rpm_limit_moves_on_when_the_wait_outlasts_the_deadline(rig):
    r = rig(limits={"rpm": 1})
    first = await r.router.complete("chat", USER)
    second = await r.router.complete("chat", USER)
    assert first.target == "a"
    assert outcomes(second) == [("a", Outcome.LIMITED), ("b", "ok")]


async def test_max_concurrency_spills_over(rig):
    r = rig(limits={"max_concurrency": 1})
    r.script("a", Step.reply("slow", delay=1.0))
    slow = asyncio.ensure_future(r.router.complete("chat", USER))
    await asyncio.sleep(0)
    fast = await r.router.complete("chat", USER)
    assert outcomes(fast) == [("a", Outcome.LIMITED), ("b", "ok")]
    assert (await slow).target == "a"


async def test_tpm_limit_counts_estimated_tokens_and_reconciles(rig, clock):
    r = rig({"latency_budget": {"total": "2s"}}, limits={"tpm": 1500})
    first = await r.router.complete("chat", USER, max_tokens=1000)
    # The first call's actual usage was tiny: the estimate was given back, so room remains.
    second = await r.router.complete("chat", USER, max_tokens=1000)
    assert (first.target, second.target) == ("a", "a")
    # 1 600 tokens exceed what refills (25 tokens/s) within the 2 s budget: skip, do not wait.
    start = clock.monotonic()
    with pytest.raises(AllTargetsFailed) as caught:
        await r.router.complete("chat", USER, max_tokens=1600)
    assert outcomes(caught.value) == [("a", Outcome.LIMITED), ("b", Outcome.LIMITED)]
    assert clock.monotonic() == start


async def test_tpm_wait_that_fits_the_deadline_is_taken(rig, clock):
    r = rig(limits={"tpm": 1500})
    start = clock.monotonic()
    result = await r.router.complete("chat", USER, max_tokens=1550)
    assert outcomes(result) == [("a", "ok")]
    assert 0 < clock.monotonic() - start < 5
