"""The breaker's state machine alone, on a fake clock."""

from __future__ import annotations

import dataclasses

from router.errors import ErrorKind, ProviderError
from router.resilience.breaker import Breaker, BreakerState, BreakerTransition
from router.resilience.window import TripRule
from router.testing import FakeClock

FAILURE = ProviderError(ErrorKind.SERVER_ERROR, "boom")
RULE = TripRule(
    consecutive=3,
    failure_rate=0.5,
    min_calls=20,
    window=60.0,
    min_workers=1,
    reset_timeout=10.0,
    max_reset_timeout=25.0,
)


def make(
    clock: FakeClock,
    events: list[BreakerTransition],
    *,
    fail_max: int = 3,
    success_threshold: int = 1,
    **rule: float,
) -> Breaker:
    return Breaker(
        "t",
        rule=dataclasses.replace(RULE, consecutive=fail_max, **rule),
        success_threshold=success_threshold,
        clock=clock,
        rand=lambda: 1.0,
        on_transition=events.append,
    )


def test_opens_after_fail_max_consecutive_failures():
    clock, events = FakeClock(), []
    breaker = make(clock, events)
    for _ in range(2):
        assert breaker.admit()
        breaker.record_failure(FAILURE)
    breaker.record_success()  # a success in between resets the count
    for _ in range(2):
        breaker.record_failure(FAILURE)
    assert breaker.state == BreakerState.CLOSED
    breaker.record_failure(FAILURE)
    assert breaker.state == BreakerState.OPEN and not breaker.admit()
    assert events == [
        BreakerTransition(
            "t", BreakerState.CLOSED, BreakerState.OPEN, clock.monotonic(), clock.monotonic() + 10.0
        )
    ]


def test_half_open_gives_exactly_one_permit_until_a_verdict():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=1)
    breaker.record_failure(FAILURE)
    clock.advance(9.9)
    assert not breaker.admit()
    clock.advance(0.2)
    assert breaker.admit() and breaker.state == BreakerState.HALF_OPEN
    assert not breaker.admit() and not breaker.admit()
    breaker.release()  # cancelled: no verdict, the permit is free again
    assert breaker.state == BreakerState.HALF_OPEN and breaker.admit()
    breaker.record_success()
    assert breaker.state == BreakerState.CLOSED and breaker.admit() and breaker.admit()


def test_success_threshold_needs_that_many_probe_successes():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=1, success_threshold=2)
    breaker.record_failure(FAILURE)
    clock.advance(11)
    assert breaker.admit()
    breaker.record_success()
    assert breaker.state == BreakerState.HALF_OPEN
    assert breaker.admit()
    breaker.record_success()
    assert breaker.state == BreakerState.CLOSED


def test_reset_timeout_doubles_per_retrip_up_to_the_cap_and_resets_on_close():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=1)
    waits = []
    breaker.record_failure(FAILURE)
    for _ in range(3):
        waits.append(breaker.retry_at - clock.monotonic())
        clock.advance(waits[-1])
        assert breaker.admit()
        breaker.record_failure(FAILURE)
    assert waits == [10.0, 20.0, 25.0]
    clock.advance(breaker.retry_at - clock.monotonic())
    assert breaker.admit()
    breaker.record_success()
    breaker.record_failure(FAILURE)
    assert breaker.retry_at - clock.monotonic() == 10.0


def test_jitter_shortens_the_wait_by_at_most_a_fifth():
    clock = FakeClock()
    low = Breaker(
        "t",
        rule=dataclasses.replace(RULE, consecutive=1, max_reset_timeout=60.0),
        success_threshold=1,
        clock=clock,
        rand=lambda: 0.0,
    )
    low.record_failure(FAILURE)
    assert low.retry_at - clock.monotonic() == 8.0


def test_a_late_failure_on_an_open_breaker_changes_nothing():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=1)
    breaker.record_failure(FAILURE)
    retry_at = breaker.retry_at
    clock.advance(1)
    breaker.record_failure(FAILURE)
    breaker.record_success()
    assert breaker.state == BreakerState.OPEN and breaker.retry_at == retry_at and len(events) == 1


def test_a_failure_rate_over_the_window_trips_once_it_holds_min_calls():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=100)
    for _ in range(9):  # 18 calls, half failed: below min_calls
        breaker.record_success()
        breaker.record_failure(FAILURE)
    assert breaker.state == BreakerState.CLOSED
    breaker.record_success()
    breaker.record_failure(FAILURE)  # 20 calls, 10 failed
    assert breaker.state == BreakerState.OPEN


def test_two_percent_failing_never_trips():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=5)
    for _ in range(400):
        for _ in range(49):
            breaker.record_success()
        breaker.record_failure(FAILURE)
        clock.advance(0.5)
    assert breaker.state == BreakerState.CLOSED and events == []


def test_the_window_forgets_old_outcomes_and_streaks():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=3, window=10.0)
    breaker.record_failure(FAILURE)
    breaker.record_failure(FAILURE)
    clock.advance(10.0)  # a whole quiet window
    breaker.record_failure(FAILURE)
    assert breaker.state == BreakerState.CLOSED


def test_a_thousand_retrips_never_overflow():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=1)
    breaker.record_failure(FAILURE)
    for _ in range(1100):
        clock.advance(breaker.retry_at - clock.monotonic())
        assert breaker.admit()
        breaker.record_failure(FAILURE)
    assert breaker.state == BreakerState.OPEN and breaker.retry_at - clock.monotonic() == 25.0


def test_recover_closes_an_open_breaker_at_once():
    clock, events = FakeClock(), []
    breaker = make(clock, events, fail_max=1)
    breaker.record_failure(FAILURE)
    breaker.recover()
    assert breaker.state == BreakerState.CLOSED and breaker.admit()
