"""Estimates that learn: without max_tokens a reservation is the p90 of what the target answered."""

from __future__ import annotations

import asyncio

import pytest

from router import Router
from router._selection import Request
from router.estimates import DEFAULT_OUTPUT_ESTIMATE, KEPT, TRUSTED_AFTER, OutputTokens
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

from .conftest import USER, build_policy


def test_the_default_until_the_target_has_answered() -> None:
    assert OutputTokens().estimate == DEFAULT_OUTPUT_ESTIMATE


def test_early_answers_raise_the_estimate_at_once_but_never_lower_it_below_the_default() -> None:
    outputs = OutputTokens()
    outputs.add(3000)
    assert outputs.estimate == 3000
    short = OutputTokens()
    for _ in range(TRUSTED_AFTER - 1):
        short.add(20)
    assert short.estimate == DEFAULT_OUTPUT_ESTIMATE  # too few to trust a short estimate


def test_the_estimate_is_the_p90_of_recent_answers() -> None:
    outputs = OutputTokens()
    for tokens in range(1, 101):  # 1 .. 100
        outputs.add(tokens)
    assert outputs.estimate == 90
    for _ in range(KEPT):  # the old answers fall out of the window
        outputs.add(7)
    assert outputs.estimate == 7


def test_a_runtime_reserves_max_tokens_when_given_else_what_it_learnt() -> None:
    router = Router(build_policy(), providers={"p1": ScriptedProvider("p1"), "p2": ScriptedProvider("p2")})
    runtime = router._runtimes["a"]
    for _ in range(20):
        runtime.outputs.add(500)
    asked = Request(USER, None, None, {}, 10, False)
    assert runtime.output_estimate(asked) == 500
    assert runtime.output_estimate(Request(USER, 64, None, {}, 10, False)) == 64


TIERED = {
    "a": {"provider": "p1", "model": "a", "price": {"input": 1.0, "output": 10.0}, "tier": "premium"},
    "b": {"provider": "p2", "model": "b", "price": {"input": 0.1, "output": 0.1}, "tier": "economy"},
}
ANSWER = "word " * 2400  # 3 001 output tokens: three times the default estimate


async def test_long_answers_without_max_tokens_keep_a_budget_within_five_percent() -> None:
    """Eight requests at a time on one worker, every answer three times the default estimate: the
    reservations learn the answers' length, so the budget is not overspent by the calls that were
    reserved as short ones (with the fixed 1 024 the worker went far past it)."""
    clock = FakeClock()
    p1 = ScriptedProvider("p1", clock=clock, default=Step.reply(ANSWER, delay=1.0))
    p2 = ScriptedProvider("p2", clock=clock)
    cost = 3001 * 10e-6  # one answer: $0.03
    usd = 100 * cost
    policy = build_policy(targets=TIERED, budgets={"premium": {"tier": "premium", "usd": usd, "per": "day"}})
    router = Router(policy, clock=clock, providers={"p1": p1, "p2": p2})
    spent = 0.0

    async def client() -> None:
        nonlocal spent
        for _ in range(30):
            result = await router.complete("chat", USER)
            if result.target == "a":
                spent += result.cost_usd

    await asyncio.gather(*(client() for _ in range(8)))
    estimate = router._runtimes["a"].output_estimate(Request(USER, None, None, {}, 10, False))
    assert estimate == 3001
    print(f"\nspent {spent / usd:.3f}x the budget")
    assert usd * 0.95 <= spent <= usd * 1.05
    await router.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_the_estimate_learns_from_streams_and_replies(stream: bool) -> None:
    clock = FakeClock()
    p1 = ScriptedProvider("p1", clock=clock, default=Step.reply("word " * 400))
    router = Router(build_policy(), clock=clock, providers={"p1": p1, "p2": ScriptedProvider("p2")})
    for _ in range(TRUSTED_AFTER):
        if stream:
            async for _ in router.stream("chat", USER):
                pass
        else:
            await router.complete("chat", USER)
    assert router._runtimes["a"].outputs.estimate == 501
    await router.aclose()


async def test_max_cost_prices_a_target_at_what_it_has_been_answering() -> None:
    # a at 1024 output tokens (the default) is $0.002: over max_cost; at its learnt 20 tokens it is not.
    policy = build_policy({"max_cost": 0.0015})
    router = Router(policy, providers={"p1": ScriptedProvider("p1"), "p2": ScriptedProvider("p2")})
    first = await router.complete("chat", USER)
    assert first.target == "b" and first.attempts[0].outcome.value == "over_budget"
    for _ in range(TRUSTED_AFTER):
        router._runtimes["a"].outputs.add(20)
    assert (await router.complete("chat", USER)).target == "a"
    await router.aclose()


async def test_cheapest_ranks_targets_at_what_they_have_been_answering() -> None:
    # Per token a is dearer, but it answers in 20 tokens where b answers in 3 000: a is the cheaper call.
    targets = {
        "a": {"provider": "p1", "model": "a", "price": {"input": 1.0, "output": 10.0}},
        "b": {"provider": "p2", "model": "b", "price": {"input": 1.0, "output": 1.0}},
    }
    policy = build_policy({"strategy": "cheapest"}, targets=targets)
    router = Router(policy, providers={"p1": ScriptedProvider("p1"), "p2": ScriptedProvider("p2")})
    assert (await router.complete("chat", USER)).target == "b"  # both at the default estimate
    for _ in range(TRUSTED_AFTER):
        router._runtimes["a"].outputs.add(20)
        router._runtimes["b"].outputs.add(3000)
    assert (await router.complete("chat", USER)).target == "a"
    await router.aclose()
