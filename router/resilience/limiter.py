"""Per-target admission: requests per minute, tokens per minute, calls in flight.

Every wait is bounded by the request's deadline: a wait may use at most half the time left
(the call itself needs the rest); when it would take longer,
the target is skipped (outcome `limited`) so the request moves on while it still can.
The bound holds for every wait together, the fleet's buckets included: they are spent from
this worker's leases (`router._quota`) and wait only for a refill, never on the store itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiolimiter import AsyncLimiter

from router.clock import Clock
from router.policy.model import LimitsSpec

__all__ = ["Bucket", "ClusterBuckets", "Limiter", "TokenBucket", "latest_start"]


def latest_start(now: float, deadline: float) -> float:
    """The latest moment a call may start: a limiter wait may use at most half the time left."""
    return now + (deadline - now) / 2


class ClusterBuckets(Protocol):
    """The fleet-wide RPM and TPM buckets of one target (see `router._fleet`)."""

    def take(self, tokens: int) -> bool:
        """Take one request and `tokens` tokens now if that needs no wait (else take nothing)."""

    async def reserve(self, tokens: int, max_wait: float) -> float | None:
        """Take one request and `tokens` tokens: the wait until covered, or None (nothing taken)."""

    def reconcile(self, delta: int) -> None:
        """Tokens used beyond the estimate (negative: fewer)."""

    def refund(self, tokens: int) -> None:
        """Give back a whole reservation (the request and its tokens) of a call that never went out."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket's arithmetic, pure: `level` tokens at `stamp`, refilled at `per_second` up to
    `capacity`. The level may go below zero (taken on credit); the taker waits for the refill.

    `TokenBucket` keeps one on a clock, `MemoryStore` one per fleet bucket (as the Lua scripts do).
    """

    level: float
    stamp: float

    def refilled(self, now: float, capacity: float, per_second: float) -> float:
        return min(capacity, self.level + max(0.0, now - self.stamp) * per_second)

    def take(
        self, now: float, amount: float, capacity: float, per_second: float, max_wait: float
    ) -> tuple[Bucket, float] | None:
        """The bucket with `amount` taken and the wait until it is covered; None if over `max_wait`
        (or never covered, with no refill)."""
        level = self.refilled(now, capacity, per_second)
        wait = 0.0
        if amount > level:
            if per_second <= 0:
                return None
            wait = (amount - level) / per_second
            if wait > max_wait:
                return None
        return Bucket(level - amount, now), wait

    def adjust(self, now: float, delta: float, capacity: float, per_second: float) -> Bucket:
        """Correct an earlier take: positive takes more, negative gives back (up to `capacity`)."""
        return Bucket(min(capacity, self.refilled(now, capacity, per_second) - delta), now)


class TokenBucket:
    """A token bucket that may be debited on an estimate and corrected afterwards.

    aiolimiter cannot refund, so tokens-per-minute, which is only known after the call, lives
    here. Reservations may take the level below zero; the reserver then waits for the refill.
    """

    __slots__ = ("_bucket", "_clock", "_rate", "capacity")

    def __init__(self, capacity: float, period: float, clock: Clock, *, level: float | None = None) -> None:
        """`capacity` refilled over `period` seconds; it starts full unless `level` says otherwise."""
        self.capacity = capacity
        self._rate = capacity / period
        self._clock = clock
        self._bucket = Bucket(capacity if level is None else level, clock.monotonic())

    def level(self) -> float:
        return self._bucket.refilled(self._clock.monotonic(), self.capacity, self._rate)

    def reserve(self, amount: float, max_wait: float) -> float | None:
        """Take `amount`; return the wait until it is covered, or None (taking nothing) if over `max_wait`."""
        taken = self._bucket.take(self._clock.monotonic(), amount, self.capacity, self._rate, max_wait)
        if taken is None:
            return None
        self._bucket, wait = taken
        return wait

    def adjust(self, delta: float) -> None:
        """Correct an earlier reservation: positive takes more, negative gives back."""
        self._bucket = self._bucket.adjust(self._clock.monotonic(), delta, self.capacity, self._rate)


class Limiter:
    """Admission to one target: per-process smoothing, and the fleet's buckets when shared."""

    __slots__ = ("_clock", "_cluster", "_in_flight", "_max_concurrency", "_rpm", "_rpm_waiting", "_tpm")

    def __init__(self, spec: LimitsSpec, clock: Clock, cluster: ClusterBuckets | None = None) -> None:
        self._clock = clock
        self._cluster = cluster
        self._rpm = AsyncLimiter(spec.rpm, 60) if spec.rpm else None
        self._rpm_waiting = 0
        self._tpm = TokenBucket(spec.tpm, 60, clock) if spec.tpm else None
        self._max_concurrency = spec.max_concurrency
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self, tokens: int, deadline: float) -> bool:
        """Admit one call of about `tokens` tokens before `deadline`, or return False.

        Every way out that does not admit the call (False, an error, a cancellation) gives
        back what was taken: the slot, the local tokens and the fleet's tokens.
        """
        # Over max_concurrency the call spills over to the next target (Envoy's overflow), since
        # how long a slot takes to free up cannot be known.
        if self._max_concurrency is not None and self._in_flight >= self._max_concurrency:
            return False
        now = self._clock.monotonic()
        start_by = latest_start(now, deadline)
        # One request leaks out of the RPM bucket every 60/rpm s; those already waiting go first.
        rpm = self._rpm
        if rpm is not None and not rpm.has_capacity():
            turn = now + (self._rpm_waiting + 1) * 60.0 / rpm.max_rate
            if turn >= start_by:
                return False
        ready = now
        if self._tpm is not None:
            wait = self._tpm.reserve(tokens, start_by - now)
            if wait is None:
                return False
            ready += wait
        self._in_flight += 1
        try:
            admitted = await self._wait(tokens, ready, start_by)
        except BaseException:
            self._undo(tokens)
            raise
        if not admitted:
            self._undo(tokens)
        return admitted

    async def _wait(self, tokens: int, ready: float, start_by: float) -> bool:
        """Wait for the fleet's buckets, the TPM refill and the RPM turn, all over by `start_by`."""
        clock = self._clock
        cluster = self._cluster
        rpm = self._rpm
        taken: ClusterBuckets | None = None  # the fleet's tokens, to give back unless admitted
        if cluster is not None and cluster.take(tokens):
            taken = cluster
        if (cluster is None or taken) and ready <= clock.monotonic() and (rpm is None or rpm.has_capacity()):
            if rpm is not None:
                await rpm.acquire()  # there is room: it returns without suspending
            return True
        admitted = False
        try:
            # Bounded as a whole: a hung store must not eat the time the next target needs.
            async with clock.timeout_at(start_by):
                if cluster is not None and taken is None:
                    wait = await cluster.reserve(tokens, start_by - clock.monotonic())
                    if wait is None:
                        return False
                    taken = cluster
                    ready = max(ready, clock.monotonic() + wait)
                    if ready > start_by:  # the reserve itself used up the time the wait needed
                        return False
                if ready > clock.monotonic():
                    await clock.sleep(ready - clock.monotonic())
                if rpm is not None:
                    self._rpm_waiting += 1
                    try:
                        await rpm.acquire()
                    finally:
                        self._rpm_waiting -= 1
            admitted = True
        except TimeoutError:
            pass
        finally:
            if taken is not None and not admitted:
                taken.refund(tokens)
        return admitted

    def _undo(self, tokens: int) -> None:
        self._in_flight -= 1
        if self._tpm is not None:
            self._tpm.adjust(-tokens)

    def release(self, estimated: int, actual: int | None) -> None:
        """The admitted call is over; `actual` tokens (when known) correct the estimate."""
        self._in_flight -= 1
        if actual is not None:
            if self._tpm is not None:
                self._tpm.adjust(actual - estimated)
            if self._cluster is not None:
                self._cluster.reconcile(actual - estimated)
