"""The state shared by every worker of a fleet: breakers, health, drains, cluster-wide limits.

`StateStore` is the protocol; `MemoryStore` serves one process, `RedisStore` a fleet. Nothing
here is on the hot path of a successful call: workers keep breaker and health state in memory,
write only failures, transitions and probe results, and learn about other workers' changes
from `watch` (pub/sub) and `snapshot` (the periodic reconcile).

Times that cross processes are relative: a record says how many seconds remain (`retry_in`),
measured on the store's clock (Redis `TIME`), so worker clocks may disagree without harm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from router.errors import StoreUnavailable
from router.resilience.breaker import BreakerState
from router.resilience.window import TripRule

__all__ = [
    "BreakerRecord",
    "Change",
    "DrainRecord",
    "Grant",
    "HealthRecord",
    "Snapshot",
    "StateStore",
    "StoreUnavailable",
]


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """A target's breaker as the fleet sees it. `generation` grows by one per transition.

    `epoch` names the store's lifetime: a store restarted empty (or flushed, or failed over
    to a copy without our keys) starts a new epoch, and its generations start over.
    """

    target: str
    state: BreakerState
    generation: int
    retry_in: float = 0.0  # open: seconds until a probe may go
    trips: int = 0  # consecutive trips without a close: the reset timeout doubles per trip
    holder: str = ""  # half-open: the worker holding the probe lease
    epoch: str = ""


@dataclass(frozen=True, slots=True)
class DrainRecord:
    """A target was drained (taken out of service for the whole fleet) or restored."""

    target: str
    drained: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a worker reconciles against: the store's epoch, every breaker that moved, the drains."""

    epoch: str
    breakers: Mapping[str, BreakerRecord]
    drained: frozenset[str]


@dataclass(frozen=True, slots=True)
class Grant:
    """The store's answer to a worker's lease of a bucket (`StateStore.lease`)."""

    granted: float  # taken from the bucket for the worker (negative: given back)
    workers: int  # live workers holding a lease of the bucket
    outstanding: float  # what the live workers hold, as each said at its last lease
    level: float  # what the bucket holds after the grant


# What a store tells its workers: one transition, one drain, or the whole picture (a reconcile).
Change = BreakerRecord | DrainRecord | Snapshot


@dataclass(frozen=True, slots=True)
class HealthRecord:
    """The last probe verdict on a target. A record past its TTL is gone: health unknown."""

    target: str
    healthy: bool
    streak: int  # consecutive probes with this verdict
    since: float  # seconds since the verdict last changed (store clock)
    checked_ago: float  # seconds since the last probe
    detail: str = ""


class StateStore(Protocol):
    async def start(self, on_change: Callable[[Change], None]) -> None:
        """Begin delivering transitions, drains and reconciles (other workers' and our own) to `on_change`."""

    async def aclose(self) -> None: ...

    # -- breakers ---------------------------------------------------------------------------

    async def report(
        self, target: str, worker: str, *, successes: int, failures: int, rule: TripRule
    ) -> BreakerRecord | None:
        """Count outcomes in the target's sliding window; the new open record when `rule` trips it.

        `successes` are those the worker saw since its last report, before these `failures`.
        """

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
        """Move the breaker if nobody moved it since `expect_generation`; announce and return the record.

        Opening again from half-open doubles the reset timeout (up to the max); closing resets it.
        """

    async def snapshot(self) -> Snapshot:
        """The epoch, every breaker not in its initial closed state, and the drains (the reconcile)."""

    async def take_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Hold `name` for `ttl` seconds unless another owner holds it (SET NX PX); renewable by its owner."""

    # -- health and drains ------------------------------------------------------------------

    async def record_probe(self, target: str, healthy: bool, detail: str, ttl: float) -> HealthRecord: ...

    async def health(self) -> dict[str, HealthRecord]: ...

    async def set_drained(self, target: str, drained: bool) -> None:
        """Drain or restore `target`, and announce it to every worker."""

    async def drained(self) -> set[str]: ...

    # -- cluster-wide limits ----------------------------------------------------------------

    async def adjust(self, bucket: str, delta: float, capacity: float, per_second: float) -> None:
        """Correct an earlier reservation: positive takes more, negative gives back."""

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
        """Take up to `amount` from a bucket for `worker`'s lease: what the bucket holds, if less
        (never below zero); a negative amount gives back (up to capacity).

        The worker says it held `holding` before this grant, and counts as live for `ttl`
        seconds (0: it leaves). `worker=""` with amount 0 only reads.
        """
