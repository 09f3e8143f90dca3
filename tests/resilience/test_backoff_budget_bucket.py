"""Backoff, the retry budget and the token bucket: pure arithmetic on a fake clock."""

from __future__ import annotations

import pytest

from router.resilience.backoff import backoff_delay
from router.resilience.limiter import TokenBucket
from router.resilience.retry_budget import RetryBudget
from router.testing import FakeClock


def test_backoff_grows_exponentially_and_caps():
    ceilings = [backoff_delay(n, base=0.1, cap=1.0, jitter=False, rand=lambda: 0.5) for n in range(1, 7)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_draws_uniformly_below_the_ceiling():
    assert backoff_delay(3, base=0.1, cap=1.0, jitter=True, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, base=0.1, cap=1.0, jitter=True, rand=lambda: 0.5) == pytest.approx(0.2)


def test_retry_budget_allows_a_ratio_of_requests_over_the_window():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_retries=0, window=10.0, clock=clock)
    for _ in range(10):
        budget.on_request()
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]
    clock.advance(10.5)  # the window slid past those requests and retries
    budget.on_request()
    assert budget.try_retry() is False  # 0.2 x 1 request
    for _ in range(4):
        budget.on_request()
    assert budget.try_retry() is True


def test_retry_budget_minimum_holds_at_low_traffic():
    budget = RetryBudget(ratio=0.0, min_retries=2, window=5.0, clock=FakeClock())
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]


def test_token_bucket_reserves_waits_and_refunds():
    clock = FakeClock()
    bucket = TokenBucket(600, 60, clock)  # 10 tokens/s
    assert bucket.reserve(500, max_wait=0) == 0
    assert bucket.reserve(200, max_wait=5) is None  # needs 10 s of refill: refused, nothing taken
    assert bucket.level() == pytest.approx(100)
    assert bucket.reserve(200, max_wait=20) == pytest.approx(10.0)
    bucket.adjust(-300)  # the call used 300 fewer tokens than reserved
    assert bucket.level() == pytest.approx(200)
    clock.advance(100)
    assert bucket.level() == pytest.approx(600)  # never above capacity
