"""This worker's place in the fleet: its breakers and drains in step with everyone's through a StateStore.

A successful call never reaches the store: successes are counted in memory and ride along with
the worker's next failure report. The store applies the same trip rule as a lone worker; when
it trips a breaker it announces the new record and every worker applies it. When an open
breaker's wait is over, the workers race for one probe lease; the winner moves the breaker to
half-open and sends the probe, and its verdict closes or reopens it for all. Only a worker
with a request for the target races for the lease, so the probe goes out at once. While the store
does not answer, each breaker falls back to its own window; the store's records take over
again once it answers (a reconcile runs on every reconnect). A store that comes back empty has
a new epoch: workers keep their open breakers and count generations afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from router._quota import Lease, Quotas, rpm_bucket, tpm_bucket
from router.clock import Clock
from router.resilience.breaker import Breaker, BreakerState
from router.state.base import BreakerRecord, Change, DrainRecord, Snapshot, StateStore, StoreUnavailable
from router.state.outages import Outages

__all__ = ["Fleet", "SharedBuckets"]

logger = logging.getLogger("router")


class Fleet:
    """Implements `FleetLink` for every breaker of one Router, and hands drains to `on_drain`."""

    def __init__(
        self,
        store: StateStore,
        worker: str,
        *,
        clock: Clock,
        probe_lease: float,
        on_drain: Callable[[str, bool], None],
    ) -> None:
        self.store = store
        self.worker = worker
        self.connected = True
        self._breakers: dict[str, Breaker] = {}
        self._clock = clock
        self._probe_lease = probe_lease
        self._on_drain = on_drain
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outages = Outages(clock)
        self._probing: set[tuple[str, int]] = set()  # (target, generation) with a lease attempt under way

    def add(self, breaker: Breaker) -> None:
        """Let the fleet decide for this breaker from now on."""
        self._breakers[breaker.name] = breaker
        breaker.fleet = self

    async def start(self) -> None:
        try:
            await self.store.start(self._apply)
        except StoreUnavailable:
            self._lost()
            return
        await self._reconcile()  # what the fleet decided before this worker listened

    async def aclose(self) -> None:
        for breaker in self._breakers.values():
            breaker.fleet = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.aclose()

    # -- what the store tells ---------------------------------------------------------------

    def _apply(self, change: Change) -> None:
        self._back()
        if isinstance(change, BreakerRecord):
            self._apply_record(change)
        elif isinstance(change, DrainRecord):
            self._on_drain(change.target, change.drained)
        else:
            self._adopt(change)

    def _apply_record(self, record: BreakerRecord) -> None:
        breaker = self._breakers.get(record.target)
        if breaker is None:
            return  # a target this worker's policy does not have
        breaker.apply(
            record.epoch, record.generation, record.state, record.retry_in, record.trips, record.holder
        )
        if record.state == BreakerState.HALF_OPEN and record.holder != self.worker:
            # If the holder dies, its lease runs out: then a worker with a request takes over.
            breaker.retry_at = self._clock.monotonic() + self._probe_lease

    def _adopt(self, snapshot: Snapshot) -> None:
        """Take the fleet's whole picture: its breakers, its drains, and its epoch."""
        now = self._clock.monotonic()
        for name, breaker in self._breakers.items():
            self._on_drain(name, name in snapshot.drained)
            record = snapshot.breakers.get(name)
            if record is None:
                record = self._unrecorded(breaker, snapshot.epoch, now)
                if record.state == BreakerState.OPEN:
                    self.spawn(self._reseed(record))
            self._apply_record(record)

    @staticmethod
    def _unrecorded(breaker: Breaker, epoch: str, now: float) -> BreakerRecord:
        """What to make of a breaker the store has no record of."""
        if epoch == breaker.epoch or breaker.state == BreakerState.CLOSED:
            # The fleet never moved it: closed, dropping what this worker decided alone while cut off.
            generation = breaker.generation if epoch == breaker.epoch else 0
            return BreakerRecord(breaker.name, BreakerState.CLOSED, generation, epoch=epoch)
        # The store lost its memory (restarted empty, flushed): an open breaker stays open until
        # its probe, and its generations and trips start over with the new epoch (so its wait is
        # no longer than a first trip's).
        retry_in = min(max(0.0, breaker.retry_at - now), breaker.rule.reset_timeout)
        return BreakerRecord(breaker.name, BreakerState.OPEN, 0, retry_in, 1, epoch=epoch)

    async def _reseed(self, record: BreakerRecord) -> None:
        """Write an open breaker the store forgot back into it, so that every worker (and the
        next reconcile) sees it open; if another worker was first, its record wins."""
        await self.call(
            self.store.transition(
                record.target,
                expect_generation=0,
                state=BreakerState.OPEN,
                reset_timeout=record.retry_in,
                max_reset_timeout=record.retry_in,
            )
        )

    # -- FleetLink: what breakers ask of the fleet ------------------------------------------

    def report(self, breaker: Breaker, successes: int) -> None:
        report = self.store.report(
            breaker.name, self.worker, successes=successes, failures=1, rule=breaker.rule
        )
        # A failure the fleet could not count still counts here.
        self.spawn(self.call(report, on_unavailable=breaker.judge))

    def request_probe(self, breaker: Breaker) -> None:
        key = (breaker.name, breaker.generation)
        if key not in self._probing:
            self._probing.add(key)
            self.spawn(self._take_probe(breaker, breaker.generation))

    async def _take_probe(self, breaker: Breaker, generation: int) -> None:
        try:
            lease = self.store.take_lease(f"probe:{breaker.name}", self.worker, self._probe_lease)
            if await self.call(lease):
                move = self.store.transition(
                    breaker.name,
                    expect_generation=generation,
                    state=BreakerState.HALF_OPEN,
                    holder=self.worker,
                )
                if await self.call(move) is not None:
                    return
                # The breaker moved without this worker hearing of it: catch up.
                self.spawn(self._reconcile())
            # Another worker probes; ask again only if its verdict has not come by then.
            breaker.retry_at = self._clock.monotonic() + min(self._probe_lease, 1.0)
        finally:
            self._probing.discard((breaker.name, generation))

    def settle_probe(self, breaker: Breaker, success: bool) -> None:
        rule = breaker.rule
        verdict = self.store.transition(
            breaker.name,
            expect_generation=breaker.generation,
            state=BreakerState.CLOSED if success else BreakerState.OPEN,
            reset_timeout=rule.reset_timeout,
            max_reset_timeout=rule.max_reset_timeout,
        )
        # If the fleet cannot hear the verdict, this worker's breaker decides alone from here.
        self.spawn(self.call(verdict, on_unavailable=breaker.release))

    # -- plumbing ---------------------------------------------------------------------------

    async def call(
        self, call: Coroutine[Any, Any, Any], on_unavailable: Callable[[], None] | None = None
    ) -> Any:
        """Run one store call; apply a record it returns; note whether the store answered."""
        try:
            result = await call
        except StoreUnavailable:
            self._lost()
            if on_unavailable is not None:
                on_unavailable()
            return None
        self._back(reconciling=isinstance(result, Snapshot))
        if isinstance(result, BreakerRecord | Snapshot):
            self._apply(result)
        return result

    def _lost(self) -> None:
        if self.connected:
            self.connected = False
            if self._outages.lost():  # once per outage, however often the store flaps
                logger.warning("shared state unreachable: this worker carries on with its local breakers")
            self.spawn(self._rejoin())

    async def _rejoin(self) -> None:
        """Knock until the store answers again (breakers stop asking it while it is away)."""
        delay = 0.1
        failed: type[BaseException] | None = None
        while not self.connected:
            await self._clock.sleep(delay)
            try:
                await self.call(self.store.snapshot())
            except Exception as error:  # not the store's absence: a bug, which must not end the knocking
                if type(error) is not failed:
                    logger.exception("rejoining the shared state failed; trying again")
                failed = type(error)
            delay = min(delay * 2, 5.0)

    def _back(self, reconciling: bool = False) -> None:
        if not self.connected:
            self.connected = True
            if self._outages.back():
                logger.warning("shared state reachable again: following the fleet's breakers")
            if not reconciling:
                self.spawn(self._reconcile())

    async def _reconcile(self) -> None:
        await self.call(self.store.snapshot())  # `call` adopts what it returns

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class SharedBuckets:
    """A target's fleet-wide RPM and TPM buckets (`ClusterBuckets`), spent from this worker's leases.

    Nothing here waits on the store: a call takes from the leases in memory, or waits (within
    its bound) for a refill the lease's keeper is fetching in the background (`router._quota`).
    """

    def __init__(self, quotas: Quotas, target: str, rpm: int | None, tpm: int | None) -> None:
        self._clock = quotas.clock
        self._rpm = quotas.lease(rpm_bucket(target), rpm, rpm / 60, credit=False) if rpm else None
        self._tpm = quotas.lease(tpm_bucket(target), tpm, tpm / 60, credit=True) if tpm else None

    @property
    def leases(self) -> tuple[Lease, ...]:
        return tuple(lease for lease in (self._rpm, self._tpm) if lease is not None)

    def take(self, tokens: int) -> bool:
        rpm, tpm = self._rpm, self._tpm
        if rpm is not None and not rpm.take(1):
            return False
        if tpm is not None and not tpm.take(tokens):
            if rpm is not None:
                rpm.give(1)
            return False
        return True

    async def reserve(self, tokens: int, max_wait: float) -> float | None:
        rpm, tpm = self._rpm, self._tpm
        deadline = self._clock.monotonic() + max_wait
        if rpm is not None and not await rpm.acquire(1, max_wait):
            return None
        if tpm is not None:
            try:
                admitted = await tpm.acquire(tokens, max(0.0, deadline - self._clock.monotonic()))
            except BaseException:
                admitted = False
                raise
            finally:
                if not admitted and rpm is not None:
                    rpm.give(1)
            if not admitted:
                return None
        return 0.0

    def reconcile(self, delta: int) -> None:
        if self._tpm is not None and delta:
            self._tpm.settle(delta)

    def refund(self, tokens: int) -> None:
        if self._rpm is not None:
            self._rpm.give(1)
        if self._tpm is not None:
            self._tpm.give(tokens)
