"""Quota leasing: the fleet's buckets, spent from memory.

The fleet's request, token and dollar buckets (a target's `rpm` and `tpm`, a budget's `usd`)
live in the state store. Each worker holds a small *lease* of every bucket it uses: units it
took from the store in the background (`StateStore.lease`) and spends on the request path by
debiting memory, so a request never waits on the store. A lease is refilled when it falls
below half its size, sized to about `horizon` seconds of this worker's own use (a decaying
average), never above `MAX_SHARE` of the bucket's capacity: a worker that does little holds
little, and what it no longer needs goes back. On shutdown everything goes back.

Token and dollar leases are spent on estimates and corrected by the real usage; they may run
ahead of their refill by about one lease (at least one call), and once the fleet's bucket is
dry a worker may send one more call with what its lease still holds. Request leases never
run ahead. So with the store answering, the fleet overspends a bucket by at most

    sum over workers of (its lease + one call's estimate), plus estimates that fell short

and never more than the bucket allows for requests.

When the store does not answer (or a refill takes longer than `patience`), a worker spends
what its lease holds, then a *local share*: a token bucket at its last known fraction of the
fleet (1 / live workers) of the bucket's rate and capacity, starting empty, so an outage adds
no burst (a token or dollar lease may run one call ahead of its share). What it spent of its
share is debited from the fleet's bucket once the store answers. Nothing on the request path
waits for the store: a call that finds its lease empty waits (within its limiter's bound) for
the refill under way, and no longer than `patience` if the store does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from router.clock import Clock
from router.policy.compile import BudgetPlan, Plan, TargetPlan
from router.resilience.limiter import TokenBucket
from router.state.base import Grant, StateStore, StoreUnavailable

__all__ = ["Lease", "Quotas", "buckets_of"]

MAX_SHARE = 0.1  # no lease holds more than this fraction of its bucket's capacity
# A worker's rate of use: the larger of two decaying averages, so that a lease grows within a
# fraction of a second when traffic picks up and shrinks over several seconds when it drops.
RATE_TAU = 5.0
RATE_TAU_FAST = 0.5
HORIZON = 2.0  # a lease covers at least this many seconds of the worker's use
LIVE_TTL = 15.0  # a worker counts as live this long after its last lease
HEARTBEAT = LIVE_TTL / 3  # how often a worker with a lease says it is still there
RETRY_MIN, RETRY_MAX = 0.1, 5.0  # while the store does not answer: a doubling wait
DRY_POLL_MIN = 0.02  # the fastest a dry bucket is asked again
_EPSILON = 1e-9

Call = Callable[[Coroutine[Any, Any, Any]], Coroutine[Any, Any, Any]]


def rpm_bucket(target: str) -> str:
    return f"rpm:{target}"


def tpm_bucket(target: str) -> str:
    return f"tpm:{target}"


def budget_bucket(budget: BudgetPlan) -> str:
    return f"budget:{budget.name}"


def buckets_of(plan: Plan, target: TargetPlan, *, fleet_limits: bool) -> dict[str, tuple[float, float]]:
    """The fleet buckets a target's calls are leased from, as name -> (capacity, per second): its
    `rpm` and `tpm` (when they are the fleet's) and every budget that covers it."""
    buckets: dict[str, tuple[float, float]] = {}
    limits = plan.providers[target.provider].limits
    if fleet_limits:
        if limits.rpm:
            buckets[rpm_bucket(target.name)] = (limits.rpm, limits.rpm / 60)
        if limits.tpm:
            buckets[tpm_bucket(target.name)] = (limits.tpm, limits.tpm / 60)
    for route in plan.routes.values():
        if target in route.targets:
            for budget in route.budgets:
                if budget.covers(target):
                    buckets[budget_bucket(budget)] = (budget.usd, budget.usd / budget.period)
    return buckets


class Quotas:
    """Every lease of one worker, and what they share: the store, the clock, whether the store answers.

    `call` runs one store call and returns its result, or None when the store is unavailable
    (`Fleet.call`, which also notes the fleet's reachability); by default the call is awaited
    as it is. `patience` (the store's socket timeout) is how long a refill may take before the
    worker stops counting on it.
    """

    def __init__(
        self,
        store: StateStore,
        worker: str,
        *,
        clock: Clock,
        patience: float = 0.25,
        call: Call | None = None,
    ) -> None:
        self.store = store
        self.worker = worker
        self.clock = clock
        self.patience = patience
        # A lease must last while a refill is late and then fails: the store's whole deadline.
        self.horizon = max(HORIZON, 8 * patience)
        self.reachable = True
        self._call = call or _unless_unavailable
        self._leases: dict[str, Lease] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def lease(self, bucket: str, capacity: float, per_second: float, *, credit: bool) -> Lease:
        """This worker's lease of `bucket` (the same one for the same name: a reload keeps it).

        `credit`: calls may run ahead of the refill (estimates, corrected afterwards); without
        it a lease only spends what it holds (whole requests).
        """
        lease = self._leases.get(bucket)
        if lease is None:
            lease = self._leases[bucket] = Lease(self, bucket, capacity, per_second, credit)
            if not self.reachable:
                lease.cut_off()
        elif (lease.capacity, lease.per_second) != (capacity, per_second):
            lease.capacity, lease.per_second = capacity, per_second
            lease.ahead = min(lease.ahead, MAX_SHARE * capacity)
        return lease

    def leases(self) -> dict[str, Lease]:
        return dict(self._leases)

    async def outstanding(self, bucket: str, capacity: float, per_second: float) -> Grant | None:
        """What the fleet's live workers hold of `bucket` (None: the store did not answer)."""
        result: Grant | None = await self._call(self.store.lease(bucket, 0.0, capacity, per_second, ""))
        return result

    async def aclose(self) -> None:
        """Stop refilling and give every lease back (each call bounded by the store's deadline)."""
        if self._closed:
            return
        self._closed = True
        for lease in self._leases.values():
            lease.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.reachable:
            await asyncio.gather(*(lease.give_back() for lease in self._leases.values()))

    # -- what the leases tell each other -----------------------------------------------------------

    def lost(self) -> None:
        """The store did not answer (or not in time): every lease turns to its local share."""
        if self.reachable:
            self.reachable = False
            for lease in self._leases.values():
                lease.cut_off()

    def back(self) -> None:
        if not self.reachable:
            self.reachable = True
            for lease in self._leases.values():
                lease.rejoin()

    async def exchange(self, call: Callable[[], Coroutine[Any, Any, Grant]]) -> Grant | None:
        """One store call for a lease: its grant, or None; past `patience` the leases stop waiting on it."""

        async def run() -> Grant | None:
            result: Grant | None = await self._call(call())
            return result

        task = self.spawn(run())
        try:
            async with self.clock.timeout_at(self.clock.monotonic() + self.patience):
                result: Grant | None = await asyncio.shield(task)
        except TimeoutError:
            self.lost()
            result = await task
        if result is None:
            self.lost()
        else:
            self.back()
        return result

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class Lease:
    """This worker's lease of one fleet bucket: taken and given back in memory, refilled in the background."""

    __slots__ = (
        "_changed",
        "_keeper",
        "_kick",
        "_last_exchange",
        "_owed",
        "_quotas",
        "_rate",
        "_rate_at",
        "_rate_fast",
        "_share",
        "_stopped",
        "_unit",
        "_wanted",
        "ahead",
        "bucket",
        "capacity",
        "credit",
        "dry",
        "held",
        "outstanding",
        "per_second",
        "size",
        "workers",
    )

    def __init__(self, quotas: Quotas, bucket: str, capacity: float, per_second: float, credit: bool) -> None:
        self._quotas = quotas
        self.bucket = bucket
        self.capacity = capacity
        self.per_second = per_second
        self.credit = credit
        self.held = 0.0  # what this worker may spend without asking (negative: what it owes)
        self.size = 0.0  # what it aims to hold
        self.dry = False  # the fleet's bucket gave less than asked: it is spent for now
        self.workers = 1  # live workers holding a lease of the bucket, as the store last said
        self.outstanding = 0.0  # what they hold, as the store last said
        # How far calls may run ahead of the refill: this worker's part of what the bucket held
        # at the last grant, at most a full lease (and that until the store first answers).
        self.ahead = MAX_SHARE * capacity
        self._rate = 0.0  # units per second this worker uses, decaying over RATE_TAU
        self._rate_fast = 0.0  # the same over RATE_TAU_FAST
        self._rate_at = quotas.clock.monotonic()
        self._unit = 0.0  # a typical call's amount (a decaying average)
        self._wanted = 0.0  # what calls waiting for a refill want
        self._share: TokenBucket | None = None  # while the store does not answer
        self._owed = 0.0  # spent from the share: the fleet's bucket is told when the store answers
        self._changed: asyncio.Future[None] | None = None  # resolved when the lease may cover more
        self._kick: asyncio.Event | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._last_exchange = -math.inf
        self._stopped = False

    def __repr__(self) -> str:
        return f"Lease({self.bucket!r}, held={self.held:g}, size={self.size:g}, dry={self.dry})"

    # -- the request path: memory only -----------------------------------------------------------

    def take(self, amount: float) -> bool:
        """Debit `amount` now if the lease (or, while the store is away, the local share) allows it."""
        self._use(amount)
        if self._quotas.reachable:
            taken = self._take_leased(amount)
        else:
            taken = self._take_shared(amount, 0.0) is not None
        self._keep_up()
        return taken

    async def acquire(self, amount: float, max_wait: float) -> bool:
        """`take`, waiting up to `max_wait` for a refill under way (or the local share's refill).

        Whatever way it ends without admitting (False, a cancellation), nothing stays taken.
        """
        clock = self._quotas.clock
        deadline = clock.monotonic() + max_wait
        self._use(amount)
        while True:
            if not self._quotas.reachable:
                wait = self._take_shared(amount, max(0.0, deadline - clock.monotonic()))
                self._keep_up()
                if wait is None:
                    return False
                if wait > 0:
                    try:
                        await clock.sleep(wait)
                    except BaseException:
                        self.give(amount)
                        raise
                return True
            if self._take_leased(amount):
                self._keep_up()
                return True
            if clock.monotonic() + self._eta(amount) >= deadline:
                return False  # not coming in time: the caller moves on at once
            # Wait for the next grant (or for the store to be given up on): never on the store itself.
            self._wanted += amount
            changed = self._next_change()
            self._keep_up()
            try:
                async with clock.timeout_at(deadline):
                    await asyncio.shield(changed)
            except TimeoutError:
                return False
            finally:
                self._wanted -= amount

    def _eta(self, amount: float) -> float:
        """How long `amount` may take to come: a refill's round trip (nothing) unless the fleet's
        bucket is dry; then this worker's part of its refill."""
        if not self.dry:
            return 0.0
        if self.per_second <= 0:
            return math.inf
        return (amount - max(self.held, 0.0)) * self.workers / self.per_second

    def give(self, amount: float) -> None:
        """Give back what a call that never went out took."""
        self.held += amount
        self._keep_up()

    def settle(self, delta: float) -> None:
        """The call used `delta` more than it took (negative: less)."""
        self.held -= delta
        self._keep_up()

    def _take_leased(self, amount: float) -> bool:
        held = self.held
        if held >= amount - _EPSILON:
            pass
        elif not self.credit:
            return False
        elif self.dry:
            if held <= 0:  # the last call of a spent bucket went already
                return False
        elif held - amount < -max(self.ahead, amount):  # at most this far ahead of the refill
            return False
        self.held = held - amount
        return True

    def _take_shared(self, amount: float, max_wait: float) -> float | None:
        """Spend what the lease holds, the rest from the share: the wait until covered, or None."""
        short = amount - max(self.held, 0.0)
        wait = 0.0
        if short > 0:
            share = self._share
            if share is None:
                return None
            if self.credit and share.level() >= 0:
                share.adjust(short)  # one call ahead of the share, as of the fleet's bucket
            else:
                reserved = share.reserve(short, max_wait)
                if reserved is None:
                    return None
                wait = reserved
            self._owed += short
            self.held += short
        self.held -= amount
        return wait

    def _use(self, amount: float) -> None:
        now = self._quotas.clock.monotonic()
        elapsed = now - self._rate_at
        self._rate = self._rate * math.exp(-elapsed / RATE_TAU) + amount / RATE_TAU
        self._rate_fast = self._rate_fast * math.exp(-elapsed / RATE_TAU_FAST) + amount / RATE_TAU_FAST
        self._rate_at = now
        self._unit = amount if not self._unit else self._unit + 0.2 * (amount - self._unit)

    # -- keeping the lease up, in the background ----------------------------------------------------

    def _target(self) -> float:
        """What to hold: the worker's use over the horizon (capped), one call at least; none when idle."""
        elapsed = self._quotas.clock.monotonic() - self._rate_at
        rate = self._rate * math.exp(-elapsed / RATE_TAU)
        if rate * RATE_TAU < 0.5 * self._unit:  # not even half a call over the last RATE_TAU
            return 0.0
        rate = max(rate, self._rate_fast * math.exp(-elapsed / RATE_TAU_FAST))
        size = min(rate * self._quotas.horizon, MAX_SHARE * self.capacity)
        return max(size, min(self._unit, self.capacity))

    def _wants(self) -> float:
        """What to ask the store for now (negative: give back); 0 asks for nothing."""
        size = self.size = self._target()
        need = max(size, self._wanted)
        if self.held < need / 2 or self.held < self._wanted or self.held < 0:
            return need - self.held
        if self.held > 2 * size + _EPSILON:
            return size - self.held
        return 0.0

    def _keep_up(self) -> None:
        """Wake the keeper when the lease runs low (or a call waits); start it on first use."""
        if self._stopped or self._quotas._closed:
            return
        if self._kick is None:
            self._kick = asyncio.Event()
            self._keeper = self._quotas.spawn(self._keep())
        if self.held < self.size / 2 or self.held < self._wanted or self.held < 0:
            self._kick.set()

    async def _keep(self) -> None:
        quotas = self._quotas
        clock = quotas.clock
        retry = RETRY_MIN
        while True:
            due = self._due(retry)
            now = clock.monotonic()
            if due is None or due > now:
                await self._pause(None if due is None else due - now)
                continue
            amount = self._wants()
            grant = await quotas.exchange(partial(self._lease, amount, max(0.0, self.held)))
            self._last_exchange = clock.monotonic()
            if grant is None:
                retry = min(retry * 2, RETRY_MAX)
                continue
            retry = RETRY_MIN
            self._granted(amount, grant)
            if self._owed:
                await self._settle_owed()

    def _due(self, retry: float) -> float | None:
        """When the keeper should next talk to the store; None: not until a call wakes it."""
        last = self._last_exchange
        if not self._quotas.reachable:
            return last + retry
        wants = self._wants()
        if self.dry and wants > 0:
            # Ask again once a call's worth may have come back into the fleet's bucket.
            poll = self._unit / self.per_second if self.per_second > 0 else HEARTBEAT
            return last + min(max(poll, DRY_POLL_MIN), HEARTBEAT)
        if wants or self._owed:
            return -math.inf
        if self.size > 0 or self.held > 0:
            return last + HEARTBEAT  # still here: so the fleet counts this worker
        return None

    def _lease(self, amount: float, holding: float) -> Coroutine[Any, Any, Grant]:
        quotas = self._quotas
        return quotas.store.lease(
            self.bucket, amount, self.capacity, self.per_second, quotas.worker, holding=holding, ttl=LIVE_TTL
        )

    def _granted(self, asked: float, grant: Grant) -> None:
        # What a full bucket could not take back is gone all the same: the bucket is full.
        self.held += grant.granted if asked >= 0 else asked
        self.workers = max(1, grant.workers)
        self.outstanding = grant.outstanding
        self.ahead = min(MAX_SHARE * self.capacity, max(0.0, grant.level) / self.workers)
        if asked > 0:
            self.dry = grant.granted < asked - _EPSILON * max(1.0, asked)
        self._wake()

    async def _pause(self, seconds: float | None) -> None:
        kick = self._kick
        assert kick is not None
        if seconds is None:
            await kick.wait()
        elif seconds > 0:
            clock = self._quotas.clock
            with contextlib.suppress(TimeoutError):
                async with clock.timeout_at(clock.monotonic() + seconds):
                    await kick.wait()
        else:
            await asyncio.sleep(0)
        kick.clear()

    async def _settle_owed(self) -> None:
        owed, self._owed = self._owed, 0.0
        try:
            await self._quotas.store.adjust(self.bucket, owed, self.capacity, self.per_second)
        except StoreUnavailable:
            self._owed += owed

    def _next_change(self) -> asyncio.Future[None]:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    # -- the store goes and comes back ----------------------------------------------------------------

    def cut_off(self) -> None:
        """Spend the lease, then a share of the fleet's rate that starts empty."""
        if self.per_second > 0:
            n = max(1, self.workers)
            period = self.capacity / self.per_second
            self._share = TokenBucket(self.capacity / n, period, self._quotas.clock, level=0.0)
        self._wake()

    def rejoin(self) -> None:
        self._share = None
        self.dry = False
        self._wake()
        if self._kick is not None:
            self._kick.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake()

    async def give_back(self) -> None:
        """Everything held goes back to the fleet's bucket, and this worker leaves it."""
        quotas = self._quotas
        with contextlib.suppress(StoreUnavailable):
            if self._owed:
                await self._settle_owed()
            if self._keeper is None and not self.held:
                return
            await quotas.store.lease(
                self.bucket,
                -max(0.0, self.held),
                self.capacity,
                self.per_second,
                quotas.worker,
                holding=max(0.0, self.held),
                ttl=0.0,
            )
            self.held = min(self.held, 0.0)


async def _unless_unavailable(call: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await call
    except StoreUnavailable:
        return None
