"""Budgets: traffic shifts to cheaper tiers when one is spent, or the route refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import BudgetExceeded, MemoryStore, Router
from router.results import Outcome
from router.testing import FakeClock
from router.testing.scripted import ScriptedProvider, Step

from .conftest import USER, build_policy

TIERED = {
    "a": {"provider": "p1", "model": "a", "price": {"input": 10.0, "output": 30.0}, "tier": "premium"},
    "b": {"provider": "p2", "model": "b", "price": {"input": 0.1, "output": 0.3}, "tier": "economy"},
}
# One call to `a` with max_tokens 100: (4 + ... ) input tokens and 100 output tokens, about $0.003.


async def background() -> None:
    """Let what runs in the background (lease refills, on a store that answers at once) run."""
    for _ in range(20):
        await asyncio.sleep(0)


async def ask(router: Router, **kwargs: Any) -> Any:
    """One request, then the background's turn (a real provider call would give it one)."""
    result = await router.complete("chat", USER, **kwargs)
    await background()
    return result


def tiered_router(
    clock: FakeClock, budgets: dict[str, Any], store: MemoryStore | None = None
) -> tuple[Router, ScriptedProvider]:
    # About 100 output tokens per answer, so the real cost is close to the estimate for max_tokens=100.
    p1 = ScriptedProvider("p1", clock=clock, default=Step.reply("word " * 80))
    p2 = ScriptedProvider("p2", clock=clock)
    policy = build_policy(targets=TIERED, budgets=budgets)
    return Router(policy, clock=clock, providers={"p1": p1, "p2": p2}, store=store), p1


async def test_a_spent_tier_budget_shifts_traffic_to_the_next_tier():
    clock = FakeClock(auto_advance=False)
    router, _ = tiered_router(clock, {"premium-hourly": {"tier": "premium", "usd": 0.01, "per": "hour"}})
    targets = [(await ask(router, max_tokens=100)).target for _ in range(6)]
    assert targets[:3] == ["a", "a", "a"] and targets[-1] == "b"
    result = await ask(router, max_tokens=100)
    assert [(a.target, a.outcome) for a in result.attempts] == [("a", Outcome.OVER_BUDGET), ("b", "ok")]
    clock.advance(3600)  # the bucket refills over the hour
    await background()
    assert (await ask(router, max_tokens=100)).target == "a"


async def test_a_route_budget_spares_the_cheapest_tier():
    clock = FakeClock(auto_advance=False)
    router, _ = tiered_router(clock, {"chat-hourly": {"route": "chat", "usd": 0.005}})
    targets = [(await ask(router, max_tokens=100)).target for _ in range(10)]
    assert "a" in targets and targets[-1] == "b" and targets.count("b") >= 5


async def test_raise_when_spent():
    clock = FakeClock(auto_advance=False)
    router, _ = tiered_router(clock, {"chat-hourly": {"route": "chat", "usd": 0.005, "when_spent": "raise"}})
    with pytest.raises(BudgetExceeded, match="budget 'chat-hourly'"):
        for _ in range(10):
            await ask(router, max_tokens=100)


async def test_the_estimate_is_settled_with_the_real_cost():
    clock = FakeClock(auto_advance=False)
    store = MemoryStore(clock)
    router, _ = tiered_router(clock, {"premium": {"tier": "premium", "usd": 1.0}}, store)
    result = await ask(router, max_tokens=1000)  # estimate: 1 000 output tokens
    # What the fleet's bucket still has plus what this worker's lease holds: all but the real cost.
    lease = router._budgets.lease(router.plan.routes["chat"].budgets[0])
    left = (await store.lease("budget:premium", 0, 1.0, 1.0 / 3600, "")).level
    assert left + lease.held == pytest.approx(1.0 - result.cost_usd, abs=1e-12)
    assert 0 < lease.held <= 0.1  # a lease, not the budget


async def test_fleet_overspend_is_at_most_one_estimate_per_worker():
    clock = FakeClock(auto_advance=False)
    store = MemoryStore(clock)
    budget = {"premium": {"tier": "premium", "usd": 0.05, "per": "day"}}
    workers = [tiered_router(clock, budget, store) for _ in range(4)]
    spent = 0.0
    for _ in range(30):
        for router, _ in workers:
            result = await ask(router, max_tokens=100)
            if result.target == "a":
                spent += result.cost_usd
    one_estimate = 10e-6 * 10 + 30e-6 * 100
    assert 0.05 - one_estimate <= spent <= 0.05 + 4 * one_estimate
