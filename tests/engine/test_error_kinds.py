"""The engine handles each error kind as the kind says (`ErrorKind`'s defaults and limits)."""

from __future__ import annotations

import pytest

from router import ErrorKind, ProviderError
from router.resilience.breaker import BreakerState
from router.testing.scripted import Step

from .conftest import USER, Rig, build_policy

# Windows on both targets, so that a context_length error may fail over (to the larger one).
TARGETS = {
    "a": {"provider": "p1", "model": "a", "context_window": 1000},
    "b": {"provider": "p2", "model": "b", "context_window": 2000},
}
EVERY_KIND = [kind.value for kind in ErrorKind]


def outcomes(result) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in result.attempts]


@pytest.mark.parametrize("kind", list(ErrorKind))
async def test_a_default_route_retries_and_fails_over_as_the_kind_says(kind: ErrorKind, clock) -> None:
    r = Rig(build_policy(targets=TARGETS), clock)
    r.script("a", Step.fail(kind))
    if kind.retried_by_default:
        assert outcomes(await r.router.complete("chat", USER)) == [("a", kind), ("a", "ok")]
    elif kind.fails_over_by_default:
        assert outcomes(await r.router.complete("chat", USER)) == [("a", kind), ("b", "ok")]
    else:
        with pytest.raises(ProviderError) as caught:
            await r.router.complete("chat", USER)
        assert caught.value.kind is kind and outcomes(caught.value) == [("a", kind)]


@pytest.mark.parametrize("kind", list(ErrorKind))
async def test_a_kind_that_blames_the_request_is_never_retried(kind: ErrorKind, clock) -> None:
    route = {"retry": {"attempts": 2, "backoff_base": "10ms", "on": EVERY_KIND}, "failover": {"on": []}}
    r = Rig(build_policy(route, targets=TARGETS), clock)
    r.script("a", Step.fail(kind))
    if kind.blames_request:
        with pytest.raises(ProviderError):
            await r.router.complete("chat", USER)
        assert r.p1.count("a") == 1
    else:
        assert outcomes(await r.router.complete("chat", USER)) == [("a", kind), ("a", "ok")]


@pytest.mark.parametrize("kind", list(ErrorKind))
async def test_only_a_kind_that_counts_against_the_breaker_trips_it(kind: ErrorKind, clock) -> None:
    route = {"retry": {"attempts": 1}, "failover": {"on": EVERY_KIND}}
    r = Rig(build_policy(route, targets=TARGETS, breaker={"fail_max": 1}), clock)
    r.script("a", Step.fail(kind))
    assert (await r.router.complete("chat", USER)).target == "b"
    opened = [(t.target, t.new) for t in r.transitions]
    assert opened == ([("a", BreakerState.OPEN)] if kind.counts_against_breaker else [])
