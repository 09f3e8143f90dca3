"""A circuit breaker per target: pybreaker's state machine, driven by our window and clock.

pybreaker as shipped counts a coroutine call as a success, counts cancellations as failures,
lets every concurrent caller through in half-open, and times its open state on the wall clock.
So the breaker is never wrapped around the call: `admit()` gates before it (open -> skip,
half-open -> one probe permit), the awaited call runs outside, and only real outcomes are fed
back (`record_success` / `record_failure`); cancellations and caller errors call `release()`.
When to open is the `TripRule` over an `OutcomeWindow` (`router.resilience.window`), the same
rule the fleet's store applies; pybreaker holds the state and tells its listeners. The open ->
half-open timing runs on the injected clock, with an open period that doubles on each re-trip
(capped) and is jittered so many processes do not probe in lockstep.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from router.clock import Clock
from router.resilience.window import OutcomeWindow, TripRule

if TYPE_CHECKING:
    import pybreaker

__all__ = ["Breaker", "BreakerState", "BreakerTransition", "FleetLink", "warm", "warmed"]


class BreakerState(StrEnum):
    """Where a target's breaker stands (the values are pybreaker's state names)."""

    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are skipped until the wait runs out
    HALF_OPEN = "half-open"  # one probe call decides

    @classmethod
    def _missing_(cls, value: object) -> BreakerState:
        raise ValueError(f"unknown breaker state {value!r}")


# pybreaker's own counting and wall-clock timer must never act: the window and our clock decide.
_NEVER = 10**9


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A breaker changed state; `retry_at` (monotonic) is set when it opened.

    `remote` is true when the change came from another worker of the fleet.
    """

    target: str
    old: BreakerState
    new: BreakerState
    at: float
    retry_at: float | None = None
    generation: int = 0
    remote: bool = False


class FleetLink(Protocol):
    """How a breaker defers to the fleet while the shared state store answers (see `router._fleet`)."""

    worker: str
    connected: bool

    def report(self, breaker: Breaker, successes: int) -> None: ...

    def request_probe(self, breaker: Breaker) -> None: ...

    def settle_probe(self, breaker: Breaker, success: bool) -> None: ...


class Breaker:
    __slots__ = (
        "_applying",
        "_cb",
        "_clock",
        "_on_transition",
        "_probing",
        "_rand",
        "_success_threshold",
        "_successes",
        "_trips",
        "_unreported",
        "_window",
        "epoch",
        "fleet",
        "generation",
        "holder",
        "name",
        "retry_at",
        "rule",
        "state",
    )

    def __init__(
        self,
        name: str,
        *,
        rule: TripRule,
        success_threshold: int,
        clock: Clock,
        rand: Callable[[], float],
        on_transition: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        self.name = name
        self.rule = rule
        self.state = BreakerState.CLOSED
        self.retry_at = 0.0
        self._clock = clock
        self._rand = rand
        self._window = OutcomeWindow(rule.window)
        self._unreported = 0  # successes the fleet has not heard of (they ride along with a failure)
        self._trips = 0
        self._probing = False
        self._successes = 0
        self._on_transition = on_transition
        self._success_threshold = success_threshold
        self._applying: float | None = None
        self.fleet: FleetLink | None = None
        self.epoch = ""  # the fleet store's epoch that `generation` counts in
        self.generation = 0
        self.holder = ""
        self._cb: pybreaker.CircuitBreaker | None = None  # made on the first transition: `_machine`

    @property
    def _machine(self) -> pybreaker.CircuitBreaker:
        """pybreaker's state machine, made when the breaker first changes state: until then it would
        only say "closed", as `state` does, and a router whose breakers never move (`router explain`,
        a healthy worker) never imports pybreaker (see `_listener_type`)."""
        cb = self._cb
        if cb is None:
            import pybreaker

            cb = self._cb = pybreaker.CircuitBreaker(
                fail_max=_NEVER,
                reset_timeout=_NEVER,
                success_threshold=self._success_threshold,
                name=self.name,
                listeners=[_listener_type()(self)],
                throw_new_error_on_trip=False,
            )
        return cb

    def reconfigure(self, rule: TripRule, success_threshold: int) -> None:
        """New settings from a reloaded policy; the state (open, its wait, the fleet's view) stays.

        A new window length starts the count over: outcomes counted in the old slices do not map.
        """
        if rule.window != self.rule.window:
            self._window = OutcomeWindow(rule.window)
        self.rule = rule
        self._success_threshold = success_threshold

    def _shared(self) -> FleetLink | None:
        fleet = self.fleet
        return fleet if fleet is not None and fleet.connected else None

    def admit(self) -> bool:
        """May a call go to this target now? In half-open, only one caller gets a yes.

        In a fleet the one caller is in the worker that holds the fleet's probe lease.
        """
        if self.state == BreakerState.CLOSED:
            return True
        fleet = self._shared()
        if self.state == BreakerState.OPEN or (fleet is not None and self.holder != fleet.worker):
            # Open, or half-open with another worker's probe (its lease may run out unused).
            if self._clock.monotonic() < self.retry_at:
                return False
            if fleet is not None:
                fleet.request_probe(self)  # the lease is taken in the background; this call skips
                return False
            self._machine.half_open()
        if self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._probing = False
        if self.state == BreakerState.CLOSED:
            # Counted in memory only: the fleet hears of successes with the next failure report.
            self._window.add(self._clock.monotonic(), 1, 0)
            self._unreported += 1
            return
        if self.state != BreakerState.HALF_OPEN:
            return  # a late success for a breaker that opened meanwhile changes nothing
        self._successes += 1
        if self._successes < self._success_threshold:
            return
        fleet = self._shared()
        if fleet is not None:
            # Hold the permit until the fleet's verdict comes back (see `apply`).
            self._probing = True
            fleet.settle_probe(self, success=True)
        else:
            self._machine.close()

    def record_failure(self, error: BaseException) -> None:
        """A real call failed on the target (`error` is for the record: the rule counts, not kinds)."""
        self._probing = False
        fleet = self._shared()
        if self.state == BreakerState.CLOSED:
            self._window.add(self._clock.monotonic(), 0, 1)
            if fleet is None:
                self.judge()
            else:
                # The fleet counts over its window and trips for everyone.
                successes, self._unreported = self._unreported, 0
                fleet.report(self, successes)
        elif self.state == BreakerState.HALF_OPEN:
            if fleet is not None:
                self._probing = True
                fleet.settle_probe(self, success=False)
            else:
                self._machine.open()

    def judge(self) -> None:
        """Open the breaker if this worker's own window says so (alone, or cut off from the fleet)."""
        if self.state != BreakerState.CLOSED:
            return
        calls, failures = self._window.counts(self._clock.monotonic())
        if self.rule.trips(calls, failures, self._window.in_a_row):
            self._machine.open()

    def apply(
        self, epoch: str, generation: int, state: BreakerState, retry_in: float, trips: int, holder: str
    ) -> None:
        """Take the fleet's word for this breaker, when it is newer than what we have.

        A record from another epoch (the store was restarted empty, flushed or replaced) is
        newer whatever its generation: generations start over with the store.
        """
        if epoch == self.epoch and (
            generation < self.generation or (generation == self.generation and state == self.state)
        ):
            return
        self.epoch = epoch
        self.generation = generation
        self.holder = holder
        self._trips = trips
        self._successes = 0
        self._probing = False
        if state == self.state:
            if state == BreakerState.OPEN:
                self.retry_at = self._clock.monotonic() + retry_in
            return
        self._applying = retry_in
        try:
            if state == BreakerState.OPEN:
                self._machine.open()
            elif state == BreakerState.HALF_OPEN:
                self._machine.half_open()
            else:
                self._machine.close()
        finally:
            self._applying = None

    def recover(self) -> None:
        """A probe outside real traffic (health's completion probe) proved the target works: close.

        In a fleet the close goes through the store, so every worker takes traffic back.
        """
        if self.state == BreakerState.CLOSED:
            return
        fleet = self._shared()
        if fleet is not None:
            fleet.settle_probe(self, success=True)
        else:
            self._probing = False
            self._machine.close()

    def release(self) -> None:
        """The admitted call ended without a verdict (cancelled, or the caller's own fault)."""
        self._probing = False

    def _changed(self, old: BreakerState, new: BreakerState) -> None:
        self.state = new
        now = self._clock.monotonic()
        retry_at = None
        remote = self._applying is not None
        if remote and new == BreakerState.OPEN:
            retry_at = self.retry_at = now + (self._applying or 0.0)
        elif new == BreakerState.OPEN:
            # Re-tripping from half-open doubles the wait; a clean close starts over.
            self._trips = self._trips + 1 if old == BreakerState.HALF_OPEN else 1
            timeout = self.rule.open_time(self._trips)
            retry_at = self.retry_at = now + timeout * (0.8 + 0.2 * self._rand())
        elif new == BreakerState.CLOSED and not remote:
            self._trips = 0
        if new == BreakerState.CLOSED:
            self._window.clear()  # a fresh start: the episode that opened it is over
            self._unreported = 0
        self._successes = 0
        if self._on_transition is not None:
            event = BreakerTransition(self.name, old, new, now, retry_at, self.generation, remote)
            self._on_transition(event)


def warm() -> None:
    """Import pybreaker now, on the caller's thread: the router does it off the event loop before a
    route's first request, so that a first trip, in the middle of an outage, never stalls the loop on
    the import (0.1 to 0.3 s)."""
    _listener_type()


def warmed() -> bool:
    """Whether `warm` has finished (pybreaker in `sys.modules` may be an import still under way)."""
    return _listener_type.cache_info().currsize > 0


@functools.cache
def _listener_type() -> Callable[[Breaker], pybreaker.CircuitBreakerListener]:
    """The listener that hands pybreaker's transitions to a `Breaker`. pybreaker is imported with the
    first transition, not with this module: it imports redis-py when that is installed (and redis-py
    its telemetry), 0.1 to 0.2 s that a policy check, `router explain` or a worker on the memory store
    whose breakers stay closed should not pay."""
    import pybreaker

    class Listener(pybreaker.CircuitBreakerListener):
        def __init__(self, breaker: Breaker) -> None:
            self._breaker = breaker

        def state_change(
            self,
            cb: pybreaker.CircuitBreaker,
            old_state: pybreaker.CircuitBreakerState | None,
            new_state: pybreaker.CircuitBreakerState,
        ) -> None:
            old = BreakerState(old_state.name) if old_state else BreakerState.CLOSED
            self._breaker._changed(old, BreakerState(new_state.name))

    return Listener
