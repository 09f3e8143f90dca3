"""`decide` alone: the verdict on one failed call, from the error, the route's rules and the facts given."""

from __future__ import annotations

from typing import Any

import pytest

from router import ErrorKind, ProviderError, StreamBroken
from router._decide import Failover, Raise, Retry, decide
from router.policy.compile import RoutePlan, compile_plan

from .conftest import build_policy


def route(**spec: Any) -> RoutePlan:
    return compile_plan(build_policy(spec)).routes["chat"]


ROUTE = route(retry={"attempts": 3, "backoff_base": "100ms", "backoff_max": "2s"})


def error(kind: ErrorKind, retry_after: float | None = None) -> ProviderError:
    return ProviderError(kind, "scripted", status=400, retry_after=retry_after)


def never() -> float:
    raise AssertionError("no backoff was needed, so no jitter may be drawn")


def verdict(failure: ProviderError, plan: RoutePlan = ROUTE, **facts: Any) -> Any:
    facts = {"calls": 1, "time_left": 10.0, "rand": lambda: 0.5} | facts
    return decide(failure, plan, **facts)


def test_a_retried_kind_is_retried_after_a_jittered_backoff():
    assert verdict(error(ErrorKind.SERVER_ERROR)) == Retry(0.05)  # 100 ms x the draw 0.5
    assert verdict(error(ErrorKind.SERVER_ERROR), calls=2) == Retry(0.1)  # the ceiling doubles


def test_without_jitter_the_backoff_is_its_ceiling():
    plan = route(retry={"attempts": 3, "backoff_base": "100ms", "jitter": "none"})
    assert verdict(error(ErrorKind.CONNECTION), plan, rand=never) == Retry(0.1)


def test_retry_after_is_the_delay_and_draws_no_jitter():
    assert verdict(error(ErrorKind.RATE_LIMITED, retry_after=1.5), rand=never) == Retry(1.5)


def test_a_retry_after_longer_than_backoff_max_moves_on():
    assert verdict(error(ErrorKind.RATE_LIMITED, retry_after=30.0), rand=never) == Failover()


def test_the_last_attempt_moves_on():
    assert verdict(error(ErrorKind.SERVER_ERROR), calls=3) == Failover()


def test_a_wait_that_would_reach_the_deadline_moves_on():
    assert verdict(error(ErrorKind.RATE_LIMITED, retry_after=1.0), time_left=1.0) == Failover()
    assert verdict(error(ErrorKind.RATE_LIMITED, retry_after=1.0), time_left=1.01) == Retry(1.0)


def test_a_spent_retry_budget_moves_on():
    assert verdict(error(ErrorKind.SERVER_ERROR), may_retry=False, rand=never) == Failover()


def test_a_kind_the_route_does_not_retry_moves_on():
    assert verdict(error(ErrorKind.TIMEOUT)) == Failover()
    plan = route(retry={"on": ["timeout"], "attempts": 2})
    assert verdict(error(ErrorKind.TIMEOUT), plan) == Retry(0.125)  # the default 250 ms base x the draw 0.5


@pytest.mark.parametrize("kind", [ErrorKind.CONTEXT_LENGTH, ErrorKind.CONTENT_FILTER, ErrorKind.BAD_REQUEST])
def test_a_fault_of_the_request_is_never_retried_whatever_the_route_says(kind):
    plan = route(retry={"on": [kind.value], "attempts": 5})
    assert not isinstance(verdict(error(kind), plan, rand=never), Retry)


def test_context_length_fails_over_to_windows_larger_than_the_target_s():
    assert verdict(error(ErrorKind.CONTEXT_LENGTH), window=8000) == Failover(window_at_most=8000)
    # An undeclared window says nothing about the others: every one may be larger.
    assert verdict(error(ErrorKind.CONTEXT_LENGTH)) == Failover(window_at_most=None)
    assert verdict(error(ErrorKind.SERVER_ERROR), calls=3, window=8000) == Failover()


def test_the_caller_s_faults_raise():
    assert verdict(error(ErrorKind.BAD_REQUEST)) == Raise()
    assert verdict(error(ErrorKind.CONTENT_FILTER)) == Raise()


def test_a_refused_prefill_fails_over_and_leaves_the_target_a_restart():
    assert verdict(error(ErrorKind.BAD_REQUEST), prefilled=True) == Failover(refused_prefill=True)
    # Other errors of a continuation are judged as any other call's.
    assert verdict(error(ErrorKind.SERVER_ERROR), prefilled=True) == Retry(0.05)
    assert verdict(error(ErrorKind.CONTENT_FILTER), prefilled=True) == Raise()


def test_a_route_that_does_not_fail_over_on_a_kind_raises_it():
    plan = route(retry={"attempts": 1}, failover={"on": ["timeout"]})
    assert verdict(error(ErrorKind.SERVER_ERROR), plan) == Raise()


def test_a_break_the_caller_saw_raises_when_the_route_says_raise():
    broken = StreamBroken("cut", received="one two")
    assert verdict(broken, surfaced=True, rand=never) == Raise()
    assert verdict(broken) == Failover()  # otherwise a break moves on, as before output
    plan = route(retry={"on": ["stream_broken"], "attempts": 2})
    assert verdict(broken, plan) == Retry(0.125)  # the default 250 ms base x the draw 0.5
