"""Strategies: the order in which a route offers its targets."""

from __future__ import annotations

from collections import Counter

from router.testing.scripted import Step

from .conftest import USER


async def test_ordered_prefers_the_primary(rig):
    r = rig()
    assert {(await r.router.complete("chat", USER)).target for _ in range(20)} == {"a"}


async def test_weighted_splits_traffic_by_weight(rig):
    r = rig({"strategy": "weighted", "targets": [{"target": "a", "weight": 3}, {"target": "b", "weight": 1}]})
    shares = Counter([(await r.router.complete("chat", USER)).target for _ in range(2000)])
    assert 0.70 < shares["a"] / 2000 < 0.80


async def test_weighted_falls_over_to_the_other_target(rig):
    from router import ErrorKind

    r = rig(
        {
            "strategy": "weighted",
            "retry": {"attempts": 1},
            "targets": [{"target": "a", "weight": 1}, {"target": "b", "weight": 1}],
        },
        breaker={"fail_max": 1000},
    )
    r.script("a", *[Step.fail(ErrorKind.SERVER_ERROR)] * 100)
    results = [await r.router.complete("chat", USER) for _ in range(40)]
    assert {res.target for res in results} == {"b"}
    trails = Counter(tuple(a.target for a in res.attempts) for res in results)
    assert set(trails) == {("a", "b"), ("b",)}


async def test_cheapest_orders_by_estimated_cost(rig):
    r = rig({"strategy": "cheapest", "targets": ["a", "b"]})
    result = await r.router.complete("chat", USER)
    assert result.target == "b"  # half a's price
    assert [plan.name for plan, _ in r.router.candidates("chat")] == ["b", "a"]


async def test_fastest_prefers_the_lower_observed_latency(rig):
    r = rig({"strategy": "fastest"})
    r.script("a", Step.reply(delay=0.5))
    r.script("b", Step.reply(delay=0.1))
    first = await r.router.complete("chat", USER)
    second = await r.router.complete("chat", USER)
    # Unmeasured targets go first, so both get measured; then the faster one leads.
    assert {first.target, second.target} == {"a", "b"}
    assert [(await r.router.complete("chat", USER)).target for _ in range(3)] == ["b"] * 3


def _last_first(candidates, rng):
    return list(reversed(candidates))


async def test_a_registered_strategy_orders_the_route(rig, monkeypatch):
    import router
    from router.policy.compile import compile_plan
    from router.strategies import STRATEGIES
    from router.traffic import expected_traffic

    from .conftest import build_policy

    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))  # others see the built-ins
    router.register_strategy(router.Strategy("last-first", _last_first))
    r = rig({"strategy": "last-first"})
    assert (await r.router.complete("chat", USER)).target == "b"
    assert [plan.name for plan, _ in r.router.candidates("chat")] == ["b", "a"]
    [split] = expected_traffic(
        compile_plan(build_policy({"strategy": "last-first"})), input_tokens=1, output_tokens=1
    )
    assert split.shares == {"b": 1.0}
