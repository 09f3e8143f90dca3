"""One prober per target per interval across the fleet; every worker reads the verdicts.

A target that served real traffic within the last interval is not probed: that traffic's last
outcome is its verdict (passive health). Otherwise the worker that wins the target's lease for
the interval probes it with the provider's models listing, the cheapest call that proves the
service and the key work. Verdicts expire: a stale one is "unknown", never "healthy".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from router.clock import Clock
from router.errors import ProviderError
from router.events import HealthEvent
from router.policy.model import HealthSpec
from router.selection import HEALTHY, UNHEALTHY, UNKNOWN, TargetRuntime
from router.state.base import HealthRecord, StateStore, StoreUnavailable

__all__ = ["HealthChecker"]

logger = logging.getLogger("router")


class HealthChecker:
    def __init__(
        self,
        store: StateStore,
        runtimes: Mapping[str, TargetRuntime],
        spec: HealthSpec,
        *,
        clock: Clock,
        worker: str,
        emit: Callable[[HealthEvent], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._worker = worker
        self._emit = emit
        self._checked_at: dict[str, float] = {}
        self.retarget(runtimes, spec)

    def retarget(self, runtimes: Mapping[str, TargetRuntime], spec: HealthSpec) -> None:
        """Follow a reloaded policy's targets and settings."""
        self._runtimes = runtimes
        self._spec = spec
        self._ttl = spec.ttl if spec.ttl is not None else 3 * spec.interval

    async def run(self) -> None:
        """Check and refresh every interval, until cancelled."""
        while True:
            try:
                await self.check_all()
                await self.refresh()
            except StoreUnavailable:
                pass  # the breakers still protect every call; verdicts resume with the store
            await self._clock.sleep(self._spec.interval)

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(runtime) for runtime in self._runtimes.values()))

    async def _check(self, runtime: TargetRuntime) -> None:
        name = runtime.plan.name
        now = self._clock.monotonic()
        checked = self._checked_at.get(name)
        if checked is not None and now - checked < self._spec.interval:
            return  # this worker already gave its verdict this interval
        self._checked_at[name] = now
        seen = runtime.last_outcome_at
        if seen is not None and now - seen < self._spec.interval:
            healthy, detail = runtime.last_ok, "passive"
        elif await self._store.take_lease(f"health:{name}", self._worker, self._spec.interval * 0.9):
            healthy, detail = await self._probe(runtime)
        else:
            return  # another worker probes it this interval
        await self._store.record_probe(name, healthy, detail, self._ttl)

    async def _probe(self, runtime: TargetRuntime) -> tuple[bool, str]:
        try:
            async with self._clock.timeout_at(self._clock.monotonic() + self._spec.timeout):
                await runtime.provider.list_models()
        except TimeoutError:
            return False, "probe timed out"
        except ProviderError as error:
            return False, f"probe failed: {error.kind}"
        return True, "probe ok"

    async def refresh(self) -> None:
        """Apply the fleet's verdicts and drains to this worker's targets."""
        records = await self._store.health()
        drained = await self._store.drained()
        now = self._clock.monotonic()
        for name, runtime in self._runtimes.items():
            runtime.drained = name in drained
            self._apply(runtime, records.get(name), now)

    def _apply(self, runtime: TargetRuntime, record: HealthRecord | None, now: float) -> None:
        previous = runtime.health
        if record is None:
            runtime.health, runtime.health_streak = UNKNOWN, 0
            return
        runtime.health_streak = record.streak
        # Hysteresis: a verdict flips only after enough probes agree.
        if record.healthy and record.streak >= self._spec.healthy_after:
            runtime.health = HEALTHY
        elif not record.healthy and record.streak >= self._spec.unhealthy_after:
            runtime.health = UNHEALTHY
        elif previous == UNKNOWN:
            runtime.health = HEALTHY if record.healthy else UNKNOWN
        if previous == UNHEALTHY and runtime.health == HEALTHY:
            runtime.recovered_at = now - record.since
        if previous != runtime.health:
            name, health = runtime.plan.name, runtime.health
            logger.info("target %s: %s -> %s (%s)", name, previous, health, record.detail)
            if self._emit is not None:
                self._emit(HealthEvent(name, previous, health, record.detail))
