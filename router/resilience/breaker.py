"""A circuit breaker per target: pybreaker's state machine, gated and timed by our clock.

pybreaker as shipped counts a coroutine call as a success, counts cancellations as failures,
lets every concurrent caller through in half-open, and times its open state on the wall clock.
So the breaker is never wrapped around the call: `admit()` gates before it (open -> skip,
half-open -> one probe permit), the awaited call runs outside, and only real outcomes are fed
back (`record_success` / `record_failure`); cancellations and caller errors call `release()`.
The open -> half-open timing runs on the injected clock, with a reset timeout that doubles on
each re-trip (capped) and is jittered so many processes do not probe in lockstep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import pybreaker

from router.clock import Clock

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Breaker", "BreakerTransition", "FleetLink"]

CLOSED = pybreaker.STATE_CLOSED
OPEN = pybreaker.STATE_OPEN
HALF_OPEN = pybreaker.STATE_HALF_OPEN

# pybreaker's own wall-clock timer must never fire: the clock-driven gate decides instead.
_NEVER = 10**9


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A breaker changed state; `retry_at` (monotonic) is set when it opened.

    `remote` is true when the change came from another worker of the fleet.
    """

    target: str
    old: str
    new: str
    at: float
    retry_at: float | None = None
    generation: int = 0
    remote: bool = False


class FleetLink(Protocol):
    """How a breaker defers to the fleet while the shared state store answers (see `router.fleet`)."""

    worker: str
    connected: bool

    def report_failure(self, breaker: Breaker, error: BaseException) -> None: ...

    def request_probe(self, breaker: Breaker) -> None: ...

    def settle_probe(self, breaker: Breaker, success: bool) -> None: ...


def _succeed() -> None:
    return None


def _fail(error: BaseException) -> NoReturn:
    raise error


class Breaker:
    __slots__ = (
        "_applying",
        "_base_timeout",
        "_cb",
        "_clock",
        "_max_timeout",
        "_on_transition",
        "_probing",
        "_rand",
        "_success_threshold",
        "_successes",
        "_trips",
        "fleet",
        "generation",
        "holder",
        "name",
        "retry_at",
        "state",
    )

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        max_reset_timeout: float,
        success_threshold: int,
        clock: Clock,
        rand: Callable[[], float],
        on_transition: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        self.name = name
        self.state: str = CLOSED
        self.retry_at = 0.0
        self._clock = clock
        self._rand = rand
        self._base_timeout = reset_timeout
        self._max_timeout = max_reset_timeout
        self._trips = 0
        self._probing = False
        self._successes = 0
        self._on_transition = on_transition
        self._success_threshold = success_threshold
        self._applying: float | None = None
        self.fleet: FleetLink | None = None
        self.generation = 0
        self.holder = ""
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=_NEVER,
            success_threshold=success_threshold,
            name=name,
            listeners=[_Listener(self)],
            throw_new_error_on_trip=False,
        )

    def _shared(self) -> FleetLink | None:
        fleet = self.fleet
        return fleet if fleet is not None and fleet.connected else None

    def admit(self) -> bool:
        """May a call go to this target now? In half-open, only one caller gets a yes.

        In a fleet the one caller is in the worker that holds the fleet's probe lease.
        """
        if self.state == CLOSED:
            return True
        fleet = self._shared()
        if self.state == OPEN:
            if self._clock.monotonic() < self.retry_at:
                return False
            if fleet is not None:
                fleet.request_probe(self)  # the lease is taken in the background; this call skips
                return False
            self._cb.half_open()
        if self._probing or (fleet is not None and self.holder != fleet.worker):
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._probing = False
        if self.state == CLOSED and self._cb.fail_counter == 0:
            return  # the steady state: nothing to reset, nothing to tell the fleet
        fleet = self._shared()
        if fleet is not None and self.state == HALF_OPEN:
            self._successes += 1
            if self._successes >= self._success_threshold:
                # Hold the permit until the fleet's verdict comes back (see `apply`).
                self._probing = True
                fleet.settle_probe(self, success=True)
            return
        self._call(_succeed)

    def record_failure(self, error: BaseException) -> None:
        self._probing = False
        fleet = self._shared()
        if fleet is None:
            self._call(_fail, error)
        elif self.state == HALF_OPEN:
            self._probing = True
            fleet.settle_probe(self, success=False)
        elif self.state == CLOSED:
            fleet.report_failure(self, error)  # the fleet counts over its window and trips for everyone

    def fail_locally(self, error: BaseException) -> None:
        """Count a failure on this worker's own state machine (the fleet could not be told)."""
        self._call(_fail, error)

    def apply(self, generation: int, state: str, retry_in: float, trips: int, holder: str) -> None:
        """Take the fleet's word for this breaker, when it is newer than what we have."""
        if generation < self.generation or (generation == self.generation and state == self.state):
            return
        self.generation = generation
        self.holder = holder
        self._trips = trips
        self._successes = 0
        self._probing = False
        if state == self.state:
            if state == OPEN:
                self.retry_at = self._clock.monotonic() + retry_in
            return
        self._applying = retry_in
        try:
            if state == OPEN:
                self._cb.open()
            elif state == HALF_OPEN:
                self._cb.half_open()
            else:
                self._cb.close()
        finally:
            self._applying = None

    def release(self) -> None:
        """The admitted call ended without a verdict (cancelled, or the caller's own fault)."""
        self._probing = False

    def _call(self, func: Callable[..., None], *args: Any) -> None:
        try:
            self._cb.call(func, *args)
        except pybreaker.CircuitBreakerError:
            pass  # a late outcome for a breaker that is already open changes nothing
        except BaseException as error:
            if not args or error is not args[0]:
                raise

    def _changed(self, old: str, new: str) -> None:
        self.state = new
        now = self._clock.monotonic()
        retry_at = None
        remote = self._applying is not None
        if remote and new == OPEN:
            retry_at = self.retry_at = now + (self._applying or 0.0)
        elif new == OPEN:
            # Re-tripping from half-open doubles the wait; a clean close starts over.
            self._trips = self._trips + 1 if old == HALF_OPEN else 1
            timeout = min(self._max_timeout, self._base_timeout * 2.0 ** (self._trips - 1))
            retry_at = self.retry_at = now + timeout * (0.8 + 0.2 * self._rand())
        elif new == CLOSED and not remote:
            self._trips = 0
        if self._on_transition is not None:
            event = BreakerTransition(self.name, old, new, now, retry_at, self.generation, remote)
            self._on_transition(event)


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self._breaker._changed(old_state.name if old_state else CLOSED, new_state.name)
