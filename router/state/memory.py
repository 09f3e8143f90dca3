"""The single-process `StateStore`: the same semantics as `RedisStore`, in memory, on a `Clock`.

It is the default when no Redis is configured and the reference the Redis scripts are tested
against: every rule here (the trip rule over the window, min_workers, generation
compare-and-set, doubling open time, leases, health TTL, token buckets) has its twin in
`router/state/lua/`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router.clock import Clock, SystemClock
from router.resilience.breaker import BreakerState
from router.resilience.limiter import Bucket
from router.resilience.window import OutcomeWindow, TripRule, open_time
from router.state.base import (
    BreakerRecord,
    Change,
    DrainRecord,
    Grant,
    HealthRecord,
    Snapshot,
    StateStore,
)

__all__ = ["MemoryStore"]

log = logging.getLogger("router")


@dataclass(slots=True)
class _Breaker:
    state: BreakerState = BreakerState.CLOSED
    generation: int = 0
    trips: int = 0
    retry_at: float = 0.0
    holder: str = ""


@dataclass(slots=True)
class _Health:
    healthy: bool
    streak: int
    since: float
    checked: float
    expires: float
    detail: str


class MemoryStore:
    """State for one process. Transitions reach the `start` callbacks synchronously, as an echo."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self.epoch = secrets.token_hex(4)
        self._callbacks: list[Callable[[Change], None]] = []
        self._breakers: dict[str, _Breaker] = {}
        self._windows: dict[str, OutcomeWindow] = {}
        self._failing: dict[str, dict[str, float]] = {}  # target -> worker -> time of its last failure
        self._leases: dict[str, tuple[str, float]] = {}
        self._health: dict[str, _Health] = {}
        self._drained: set[str] = set()
        self._buckets: dict[str, Bucket] = {}
        # bucket -> worker -> (live until, what it holds)
        self._holders: dict[str, dict[str, tuple[float, float]]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(breakers={len(self._breakers)}, health={len(self._health)})"

    async def start(self, on_change: Callable[[Change], None]) -> None:
        self._callbacks.append(on_change)

    async def aclose(self) -> None:
        self._callbacks.clear()

    # -- breakers ---------------------------------------------------------------------------

    async def report(
        self, target: str, worker: str, *, successes: int, failures: int, rule: TripRule
    ) -> BreakerRecord | None:
        now = self._clock.monotonic()
        breaker = self._breakers.get(target)
        if breaker is not None and breaker.state != BreakerState.CLOSED:
            return None  # outcomes of an episode that was already judged
        window = self._windows.get(target)
        if window is None:
            window = self._windows[target] = OutcomeWindow(rule.window)
        window.add(now, successes, failures)
        failing = self._failing.setdefault(target, {})
        if failures:
            failing[worker] = now
        for who in [who for who, at in failing.items() if at <= now - rule.window]:
            del failing[who]
        calls, failed = window.counts(now)
        if not rule.trips(calls, failed, window.in_a_row) or len(failing) < rule.min_workers:
            return None
        breaker = self._breakers.setdefault(target, _Breaker())
        breaker.trips += 1
        breaker.state, breaker.holder = BreakerState.OPEN, ""
        breaker.generation += 1
        timeout = rule.open_time(breaker.trips)
        breaker.retry_at = now + timeout
        self._forget_window(target)
        return self._announce(target, breaker, timeout)

    async def transition(
        self,
        target: str,
        *,
        expect_generation: int,
        state: BreakerState,
        holder: str = "",
        reset_timeout: float = 0.0,
        max_reset_timeout: float = 0.0,
    ) -> BreakerRecord | None:
        state = BreakerState(state)  # refuses a string that is no state
        now = self._clock.monotonic()
        breaker = self._breakers.get(target) or _Breaker()
        if breaker.generation != expect_generation:
            return None
        self._breakers[target] = breaker
        breaker.generation += 1
        breaker.state = state
        timeout = 0.0
        if state == BreakerState.OPEN:
            breaker.trips += 1
            timeout = open_time(breaker.trips, reset_timeout, max_reset_timeout)
            breaker.retry_at, breaker.holder = now + timeout, ""
        elif state == BreakerState.HALF_OPEN:
            breaker.retry_at, breaker.holder = 0.0, holder
        else:
            breaker.trips, breaker.retry_at, breaker.holder = 0, 0.0, ""
            self._forget_window(target)
        return self._announce(target, breaker, timeout)

    async def snapshot(self) -> Snapshot:
        now = self._clock.monotonic()
        breakers = {target: self._record(target, b, now) for target, b in self._breakers.items()}
        return Snapshot(self.epoch, breakers, frozenset(self._drained))

    async def take_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = self._clock.monotonic()
        held = self._leases.get(name)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[name] = (owner, now + ttl)
        return True

    # -- health and drains ------------------------------------------------------------------

    async def record_probe(self, target: str, healthy: bool, detail: str, ttl: float) -> HealthRecord:
        now = self._clock.monotonic()
        previous = self._live_health(target, now)
        if previous is not None and previous.healthy == healthy:
            streak, since = previous.streak + 1, previous.since
        else:
            streak, since = 1, now
        self._health[target] = _Health(healthy, streak, since, now, now + ttl, detail)
        return HealthRecord(target, healthy, streak, since=now - since, checked_ago=0.0, detail=detail)

    async def health(self) -> dict[str, HealthRecord]:
        now = self._clock.monotonic()
        records: dict[str, HealthRecord] = {}
        for target in list(self._health):
            h = self._live_health(target, now)
            if h is not None:
                records[target] = HealthRecord(
                    target, h.healthy, h.streak, now - h.since, now - h.checked, h.detail
                )
        return records

    async def set_drained(self, target: str, drained: bool) -> None:
        if drained:
            self._drained.add(target)
        else:
            self._drained.discard(target)
        self._tell(DrainRecord(target, drained))

    async def drained(self) -> set[str]:
        return set(self._drained)

    # -- cluster-wide limits ----------------------------------------------------------------

    async def adjust(self, bucket: str, delta: float, capacity: float, per_second: float) -> None:
        now = self._clock.monotonic()
        self._buckets[bucket] = self._bucket(bucket, capacity, now).adjust(now, delta, capacity, per_second)

    async def lease(
        self,
        bucket: str,
        amount: float,
        capacity: float,
        per_second: float,
        worker: str,
        *,
        holding: float = 0.0,
        ttl: float = 10.0,
    ) -> Grant:
        now = self._clock.monotonic()
        level = self._bucket(bucket, capacity, now).refilled(now, capacity, per_second)
        granted = min(amount, max(0.0, level)) if amount >= 0 else max(amount, level - capacity)
        if granted:
            self._buckets[bucket] = Bucket(level - granted, now)
        holders = self._holders.setdefault(bucket, {})
        for who in [who for who, (until, _) in holders.items() if until <= now]:
            del holders[who]
        if worker:
            if ttl > 0:
                holders[worker] = (now + ttl, max(0.0, holding + granted))
            else:
                holders.pop(worker, None)
        return Grant(granted, len(holders), sum(held for _, held in holders.values()), level - granted)

    # -- internals --------------------------------------------------------------------------

    def _bucket(self, bucket: str, capacity: float, now: float) -> Bucket:
        return self._buckets.get(bucket) or Bucket(capacity, now)

    def _live_health(self, target: str, now: float) -> _Health | None:
        h = self._health.get(target)
        if h is not None and h.expires <= now:
            del self._health[target]
            return None
        return h

    def _forget_window(self, target: str) -> None:
        self._windows.pop(target, None)
        self._failing.pop(target, None)

    def _announce(self, target: str, b: _Breaker, retry_in: float) -> BreakerRecord:
        record = BreakerRecord(target, b.state, b.generation, retry_in, b.trips, b.holder, self.epoch)
        self._tell(record)
        return record

    def _tell(self, change: Change) -> None:
        for callback in list(self._callbacks):
            try:
                callback(change)
            except Exception:
                log.exception("state callback failed on %s", change)

    def _record(self, target: str, b: _Breaker, now: float) -> BreakerRecord:
        retry_in = max(0.0, b.retry_at - now) if b.state == BreakerState.OPEN else 0.0
        return BreakerRecord(target, b.state, b.generation, retry_in, b.trips, b.holder, self.epoch)


if TYPE_CHECKING:

    def _implements_the_protocol(store: MemoryStore) -> StateStore:
        return store
